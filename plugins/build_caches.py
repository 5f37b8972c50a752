"""Built-in build caches (filled in by their issue)."""
