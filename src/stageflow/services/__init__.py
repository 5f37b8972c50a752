"""Generic plumbing for clients of rate-limited, paid or flaky services (Coupang, Gemini, Google
Sheets, any plugin's): no vendor knowledge here.

- :mod:`~stageflow.services.resilience`: a token bucket per endpoint (in memory, or shared by every
  process through the store's ``rate_buckets``), a circuit breaker, and a retry loop honouring
  Retry-After;
- :mod:`~stageflow.services.budget`: a monthly call budget with alerts at 70/80/90/95 %;
- :mod:`~stageflow.services.cache`: a TTL response cache (the store's ``api_cache``, or in memory).

Hand-written rather than ``pybreaker`` / ``tenacity`` / ``cachetools``: see docs/architecture.md
("Service plumbing") for why each was or was not a fit.
"""
