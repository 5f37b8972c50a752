"""Built-in deploy hooks (filled in by their issue)."""
