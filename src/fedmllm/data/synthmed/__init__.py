"""data/synthmed room."""
