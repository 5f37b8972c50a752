"""Video-analysis engines (sources, decoding, inference glue, analysis). Plain modules, no Prefect."""
