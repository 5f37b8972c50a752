"""Small bundled inputs for `stageflow demo` (the embedded-default main job). Data only, no code."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
