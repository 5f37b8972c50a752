"""Prefect Block types for credentials and targets (Coupang, Gemini, Slack, Google service account,
SSH deploy targets). They import nothing of stageflow but models. Filled in by the operations issue."""
