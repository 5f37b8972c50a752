"""Commerce and external-service plumbing: the Coupang Partners client, its HMAC signing, and the
resilience parts every SaaS client shares (token bucket, circuit breaker, retries, budget guard,
response cache). Nothing here imports a plugin or a flow."""
