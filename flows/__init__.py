"""Thin Prefect flows, one module per flow family. Orchestration only: each task wraps one stage
call from a plain module under ``stageflow``; backends are resolved by name through the registries."""
