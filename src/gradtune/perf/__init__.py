"""How well training uses the machine: the machine's measured matmul peak (peak.py), a model's
training FLOPs per token (flops.py), and from the two the model FLOPs utilisation (MFU) that
metrics.jsonl's train records and the progress bar show."""
