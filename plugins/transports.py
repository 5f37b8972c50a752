"""Built-in transports (filled in by their issue)."""
