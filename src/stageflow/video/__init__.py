"""Video-analysis engines (sources, decoding, inference glue, analysis). Plain modules, no Prefect."""

#: Containers stageflow decodes (what the folder source lists and the http downloader fetches).
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
