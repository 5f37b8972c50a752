"""Operations monitor: run probes, remember each probe's state, and turn state changes into alerts,
recoveries and escalations. Plain modules, no Prefect (the flow is stageflow.flows.monitor)."""
