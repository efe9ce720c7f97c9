"""Built-in concept extractors."""
