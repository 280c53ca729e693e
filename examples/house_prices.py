"""Synthetic house prices for the gradient-descent tutorial (docs/gradient-descent.md):
price = W_TRUE * area + noise, seeded.

    python examples/house_prices.py data/houses.csv [--rows 300] [--seed 0]

Columns: `area` (m², a whole number), `area_100` (the same area in hundreds of m², a feature on
the scale where a learning rate of ~0.1 converges) and `price` (thousands, a whole number).
Then train it with `task: tabular`, `data.feature_columns: [area_100]`, `model.name: mlp`.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

W_TRUE = 3.0  # thousands per m²
NOISE = 20.0  # std of the noise, thousands


def house_rows(n: int = 300, seed: int = 0) -> list[dict[str, float]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        area = rng.randint(40, 200)
        price = round(W_TRUE * area + rng.gauss(0, NOISE))
        rows.append({"area": area, "area_100": area / 100, "price": price})
    return rows


def write(path: str | Path, n: int = 300, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["area", "area_100", "price"])
        writer.writeheader()
        writer.writerows(house_rows(n, seed))
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the CSV file to write")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"wrote {args.rows} rows to {write(args.output, args.rows, args.seed)}")
