"""utils room."""
