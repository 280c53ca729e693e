"""Training: prepare a job from a config, run THE loop (loop.py), and what it relies on."""
