"""adaptlr."""
