"""Datasets on disk: one module per layout (read and write together), checked and converted."""
