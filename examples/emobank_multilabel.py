"""A small multi-label data set derived from EmoBank (sentence valence, 1-5), for `task: multilabel`.

    python examples/emobank_multilabel.py PATH/emobank OUT_DIR [--train-rows 1500] [--dev-rows 300]

PATH/emobank holds EmoBank's `train.csv` and `dev.csv` with the columns `text,target` (valence:
1 very negative, 3 neutral, 5 very positive). The copy gradtune's authors use carries valence
only (no arousal or dominance), so the tags are valence bands, and the bands overlap so that
one sentence can carry several tags:

    positive       valence >= 3.2        very_positive  valence >= 3.6
    negative       valence <= 2.8        very_negative  valence <= 2.4
    mild           2.6 <= valence <= 3.4 (overlaps both positive and negative)

A very positive sentence is "positive,very_positive"; one at 3.3 is "positive,mild". Writes
OUT_DIR/train.csv and OUT_DIR/dev.csv with the columns `text,tags` (tags joined by ","), taking
a seeded random sample of each split. Then:

    gradtune train examples/emobank_multilabel.yaml data.train=OUT_DIR/train.csv data.validation=OUT_DIR/dev.csv
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

BANDS = {  # tag -> (lowest, highest) valence, both inclusive
    "very_negative": (1.0, 2.4),
    "negative": (1.0, 2.8),
    "mild": (2.6, 3.4),
    "positive": (3.2, 5.0),
    "very_positive": (3.6, 5.0),
}


def tags(valence: float) -> list[str]:
    """Every band the valence falls in (possibly none: never, as the bands cover 1-5)."""
    return [name for name, (low, high) in BANDS.items() if low <= valence <= high]


def convert(source: Path, target: Path, rows: int, seed: int) -> tuple[int, dict[str, int]]:
    """Write a sample of `rows` rows of `source` (text,target) to `target` (text,tags); returns
    the rows written and how many carry each tag."""
    with source.open(newline="", encoding="utf-8") as f:
        data = [r for r in csv.DictReader(f) if r["text"].strip()]
    sample = random.Random(seed).sample(data, min(rows, len(data)))
    counts = dict.fromkeys(BANDS, 0)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "tags"])
        writer.writeheader()
        for row in sample:
            names = tags(float(row["target"]))
            for name in names:
                counts[name] += 1
            writer.writerow({"text": row["text"], "tags": ",".join(names)})
    return len(sample), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("emobank", type=Path, help="folder with EmoBank's train.csv and dev.csv (text,target)")
    parser.add_argument("out", type=Path, help="folder to write train.csv and dev.csv (text,tags) into")
    parser.add_argument("--train-rows", type=int, default=1500)
    parser.add_argument("--dev-rows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    for split, rows in (("train", args.train_rows), ("dev", args.dev_rows)):
        written, counts = convert(args.emobank / f"{split}.csv", args.out / f"{split}.csv", rows, args.seed)
        per_tag = ", ".join(f"{name} {count}" for name, count in counts.items())
        print(f"{args.out / split}.csv: {written} rows; {per_tag}")


if __name__ == "__main__":
    main()
