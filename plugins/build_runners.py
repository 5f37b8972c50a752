"""Built-in build runners (filled in by their issue)."""
