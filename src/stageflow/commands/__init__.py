"""CLI command groups, one module per flow family. Each exposes ``register(app)``; modules import
their engines inside the command functions so ``stageflow --help`` stays fast."""
