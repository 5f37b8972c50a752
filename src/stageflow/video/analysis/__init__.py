"""Video analysis, part 2: product candidates from part 1's evidence (transcript, detections, OCR),
scoring, PPL, commerce matching and the status machine. Entry point: ``analyze_video``.

Plain modules, no Prefect; nothing here imports a plugin or a flow."""
