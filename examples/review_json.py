"""Writes examples/data/review_json/{train,dev}.jsonl: product reviews and the JSON record a shop's
system wants from each, {"product": ..., "sentiment": "positive" | "negative" | "mixed",
"rating": 1-5}, as alpaca rows (instruction, input, output). The reviews are written by this
script from templates (no outside data), seeded, so the files are the same on every run:

    python examples/review_json.py

The base SmolLM2-135M-Instruct answers such a request in prose, or in JSON of another shape: this
is what `examples/instruct_smollm2.yaml` teaches it (docs/llm.md has the before and after).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

INSTRUCTION = ('Extract the review as JSON with the keys "product", "sentiment" (positive, negative or mixed) '
               'and "rating" (1 to 5). Reply with the JSON only.')
PRODUCTS = ["kettle", "toaster", "blender", "desk lamp", "office chair", "backpack", "rain jacket", "phone case",
            "coffee grinder", "air fryer", "vacuum cleaner", "water bottle", "yoga mat", "bike helmet", "headphones",
            "keyboard", "monitor stand", "hair dryer", "electric toothbrush", "frying pan", "rice cooker", "tent",
            "sleeping bag", "running shoes", "wall clock", "bookshelf", "mattress", "pillow", "umbrella", "suitcase",
            "smartwatch", "webcam", "microwave", "fan", "heater", "drill", "garden hose", "sunglasses", "notebook",
            "power bank"]
GOOD = ["works perfectly", "is really well made", "exceeded my expectations", "was worth every penny",
        "does exactly what it promises", "feels sturdy and looks great", "arrived quickly and works like a charm",
        "is the best I have owned", "is so easy to use", "is quiet and efficient"]
BAD = ["broke after two days", "stopped working within a week", "feels cheap and flimsy", "is far too loud",
       "arrived damaged", "was a waste of money", "never worked properly", "is much smaller than advertised",
       "smells of plastic", "keeps overheating"]
MIXED = [("works well", "the battery dies quickly"), ("looks nice", "the buttons are stiff"),
         ("is powerful", "it is very heavy"), ("was cheap", "the instructions are useless"),
         ("does the job", "it scratches easily"), ("is comfortable", "the colour faded fast")]
OPENINGS = ["I bought the {p} last month and it {x}.", "This {p} {x}.", "Ordered a {p} for my sister; it {x}.",
            "Our new {p} {x}.", "The {p} I got {x}.", "After a week with this {p}: it {x}."]
MIXED_OPENINGS = ["The {p} {a}, but {b}.", "My {p} {a}; however {b}.", "I like that the {p} {a}, though {b}."]
RATINGS = {"positive": [4, 5], "negative": [1, 2], "mixed": [3]}
STARS = ["I'd give it {n} out of 5.", "{n} stars.", "Rating: {n}/5.", "{n}/5 from me.", ""]


def review(rng: random.Random, product: str) -> tuple[str, dict]:
    sentiment = rng.choice(["positive", "positive", "negative", "negative", "mixed"])
    if sentiment == "mixed":
        a, b = rng.choice(MIXED)
        text = rng.choice(MIXED_OPENINGS).format(p=product, a=a, b=b)
    else:
        text = rng.choice(OPENINGS).format(p=product, x=rng.choice(GOOD if sentiment == "positive" else BAD))
    rating = rng.choice(RATINGS[sentiment])
    stars = rng.choice(STARS).format(n=rating)
    text = f"{text} {stars}".strip() if stars else text
    return text, {"product": product, "sentiment": sentiment, "rating": rating}


def rows(n: int, products: list[str], rng: random.Random) -> list[dict]:
    out = []
    for _ in range(n):
        text, record = review(rng, rng.choice(products))
        out.append({"instruction": INSTRUCTION, "input": text, "output": json.dumps(record)})
    return out


def main(folder: Path) -> None:
    rng = random.Random(7)
    products = PRODUCTS[:]
    rng.shuffle(products)
    # dev reviews are of products the training reviews never mention: the model must copy, not recall
    train, dev = rows(400, products[:32], rng), rows(60, products[32:], rng)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("train", train), ("dev", dev)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    print(f"wrote {len(train)} training and {len(dev)} dev rows to {folder}")


if __name__ == "__main__":
    main(Path(__file__).resolve().parent / "data" / "review_json")
