"""The model directory: layout, reading, validation and writing."""
