"""Data: read files and check their rows (files.py, rows.py), and batch examples (batching.py)."""
