"""RQ job functions, one module per feature."""
