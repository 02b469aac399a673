"""aggregators room."""
