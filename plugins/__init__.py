"""Built-in stageflow plugins, one module per backend family.

They register through the ``stageflow`` entry-point group in pyproject.toml, exactly as third-party
plugins do. Modules here import only the core at import time; optional dependencies are imported
inside the factories so ``stageflow plugins`` works without the extras.
"""
