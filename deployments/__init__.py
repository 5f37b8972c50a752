"""Deployment helpers: the demo entry, work-pool templates and `serve` (later issues)."""
