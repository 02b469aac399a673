"""deploy room."""
