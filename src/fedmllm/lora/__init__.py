"""lora room."""
