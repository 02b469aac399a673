"""federation room."""
