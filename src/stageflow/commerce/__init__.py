"""Commerce: the Coupang Partners client, its HMAC signing and product matching. The generic service
plumbing it uses (token buckets, circuit breaker, retries, budget guard, response cache) lives in
:mod:`stageflow.services`, shared with the other SaaS clients. Nothing here imports a plugin or a flow."""
