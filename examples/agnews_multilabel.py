"""A small multi-label data set built from AG News, for `task: multilabel`.

    python examples/agnews_multilabel.py PATH/ag_news OUT_DIR [--train-rows 3000] [--dev-rows 500]

PATH/ag_news holds AG News' `train.csv` and `dev.csv` (columns `text,label`; 0 World, 1 Sports,
2 Business, 3 Sci/Tech). Each row written is a short news digest: one article's description,
or two of them joined into one text (half the rows). Its tags are the topics of the articles in
it, so a digest carries one or two of the four tags ("World,Business"). Articles are drawn from
one split only, so no training text reaches the dev file. Writes OUT_DIR/train.csv and
OUT_DIR/dev.csv with the columns `text,tags` (tags joined by ","). Then:

    gradtune train examples/agnews_multilabel.yaml
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

TOPICS = ["World", "Sports", "Business", "Sci/Tech"]


def digests(source: Path, rows: int, seed: int) -> list[dict[str, str]]:
    """`rows` digests of one or two articles of `source`, each article used at most once."""
    with source.open(newline="", encoding="utf-8") as f:
        articles = [(r["text"].strip(), TOPICS[int(r["label"])]) for r in csv.DictReader(f) if r["text"].strip()]
    rng = random.Random(seed)
    rng.shuffle(articles)
    out = []
    for i in range(rows):
        take = 1 if i % 2 == 0 else 2
        if len(articles) < take:
            break
        picked, articles = articles[:take], articles[take:]
        tags = sorted({topic for _, topic in picked}, key=TOPICS.index)
        out.append({"text": " ".join(text for text, _ in picked), "tags": ",".join(tags)})
    rng.shuffle(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ag_news", type=Path, help="folder with AG News' train.csv and dev.csv (text,label)")
    parser.add_argument("out", type=Path, help="folder to write train.csv and dev.csv (text,tags) into")
    parser.add_argument("--train-rows", type=int, default=3000)
    parser.add_argument("--dev-rows", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", args.train_rows), ("dev", args.dev_rows)):
        data = digests(args.ag_news / f"{split}.csv", rows, args.seed)
        with (args.out / f"{split}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "tags"])
            writer.writeheader()
            writer.writerows(data)
        two = sum("," in row["tags"] for row in data)
        print(f"{args.out / split}.csv: {len(data)} digests, {two} of them with two topics")


if __name__ == "__main__":
    main()
