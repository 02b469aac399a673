"""methods room."""
