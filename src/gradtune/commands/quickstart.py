"""`gradtune quickstart`: the main job on the bundled model and data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer
import yaml
from rich.table import Table

from gradtune.commands.app import app, friendly_errors, out
from gradtune.commands.tables import show_run

QUICKSTART_EXAMPLES = [
    "An absolute delight from start to finish, I'd go back tomorrow.",
    "The battery died after an hour and support never answered.",
    "Not bad at all, the staff were friendly and the room was spotless.",
]



@app.command()
@friendly_errors
def quickstart(
    output_dir: Path = typer.Option(Path("runs/quickstart"), help="where to save the run"),
) -> None:
    """Fine-tune the bundled MiniLM on the bundled sentiment data, then predict three sentences."""
    from gradtune.api import load
    from gradtune.api import train as train_run

    data = resources.files("gradtune") / "resources"
    raw = yaml.safe_load((data / "quickstart.yaml").read_text())
    raw["data"]["train"] = str(data / "sentiment" / "train.csv")
    raw["data"]["validation"] = str(data / "sentiment" / "dev.csv")
    raw["output_dir"] = str(output_dir)
    run = train_run(raw, overwrite=True)
    show_run(run)
    predictor = load(run.run_dir)
    table = Table(title="predictions")
    table.add_column("text")
    table.add_column("label")
    table.add_column("probability", justify="right")
    for sentence, result in zip(QUICKSTART_EXAMPLES, predictor.predict(QUICKSTART_EXAMPLES)):
        table.add_row(sentence, result["label"], f"{result['probabilities'][result['label']]:.3f}")
    out.print(table)
    out.print(f"Next: gradtune predict {run.run_dir} --text \"your sentence\"")
