"""What a run reports while it trains: the metrics log, the terminal, and gradient health."""
