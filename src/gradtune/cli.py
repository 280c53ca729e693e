"""The `gradtune` command: parse arguments, call the API, print. No logic of its own."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    add_completion=False, no_args_is_help=True,
    help="Fine-tune pretrained language models, or train small ones from scratch, from one config file.",
)
out = Console()
err = Console(stderr=True)

QUICKSTART_EXAMPLES = [
    "An absolute delight from start to finish, I'd go back tomorrow.",
    "The battery died after an hour and support never answered.",
    "Not bad at all, the staff were friendly and the room was spotless.",
]


def friendly_errors(command: Callable) -> Callable:
    """Bad input ends with one readable message and exit code 2, Ctrl-C with 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from gradtune.errors import GradtuneError

        try:
            return command(*args, **kwargs)
        except GradtuneError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted")
            raise typer.Exit(130) from None

    return wrapper


def metrics_table(title: str, metrics: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if isinstance(value, (int, float)):
            table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


def confusion_table(labels: list[str], matrix: list[list[int]]) -> Table:
    table = Table(title="confusion matrix (rows: true, columns: predicted)")
    table.add_column("")
    for name in labels:
        table.add_column(name, justify="right")
    for name, row in zip(labels, matrix):
        table.add_row(name, *(str(c) for c in row))
    return table


def show_run(run: Any) -> None:
    out.print(f"Trained {run.steps} steps in {run.train_seconds:.0f}s ({run.samples_per_second:.1f} samples/s)")
    if run.metrics:
        out.print(metrics_table("validation (last evaluation)", run.metrics))
        if "confusion_matrix" in run.metrics:
            labels = json.loads((run.run_dir / "model" / "gradtune.json").read_text())["labels"]
            out.print(confusion_table(labels, run.metrics["confusion_matrix"]))
    if run.test_metrics:
        out.print(metrics_table(f"test (best model, {run.test_metrics['examples']} examples)", run.test_metrics))
    if run.best_step is not None:
        metric = yaml.safe_load((run.run_dir / "config.yaml").read_text())["train"]["metric"]
        out.print(f"Best {metric} {run.best_metric:.4f} at step {run.best_step}: that model is in {run.run_dir}/model")
    else:
        out.print(f"Saved to {run.run_dir}/model")


@app.command()
@friendly_errors
def train(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted key=value, e.g. train.lr=3e-5"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run in output_dir"),
) -> None:
    """Train a model from CONFIG."""
    from gradtune.api import train as train_run

    run = train_run(config, overrides or [], resume=resume, overwrite=overwrite)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary: the main process's
        show_run(run)


@app.command("eval")
@friendly_errors
def eval_command(
    run: Path = typer.Argument(..., help="run directory (the output_dir of a training run)"),
    data: Path = typer.Option(..., "--data", help="labelled file with the training columns"),
    output: Path | None = typer.Option(None, "--output", help="write the metrics as JSON"),
) -> None:
    """Evaluate a trained run on a labelled file."""
    from gradtune.api import evaluate

    metrics = evaluate(run, data)
    out.print(metrics_table(f"{data}", metrics))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(metrics, indent=1))
        out.print(f"Wrote {output}")


@app.command()
@friendly_errors
def predict(
    run: Path = typer.Argument(..., help="run directory"),
    text: list[str] | None = typer.Option(None, "--text", help="a text to predict for (repeatable)"),
    input: Path | None = typer.Option(None, "--input", help="file of texts (same text column as training)"),
    output: Path | None = typer.Option(None, "--output", help=".csv or .jsonl for --input's predictions"),
    backend: str = typer.Option("torch", "--backend", help="torch, or onnx: onnxruntime on RUN/onnx"),
) -> None:
    """Predict labels with probabilities (classification, multilabel) or values (regression)."""
    from gradtune.api import load, predict_file
    from gradtune.errors import GradtuneError

    if bool(text) == bool(input):
        raise GradtuneError("give either --text (one or more) or --input FILE --output FILE")
    if input:
        if output is None:
            raise GradtuneError("--input needs --output FILE (.csv or .jsonl)")
        n = predict_file(run, input, output, backend=backend)
        out.print(f"Wrote {n} predictions to {output}")
        return
    for t, result in zip(text, load(run, backend=backend).predict(list(text))):
        print(json.dumps({"text": t, **result}, ensure_ascii=False))  # one JSON object per line, unwrapped


@app.command()
@friendly_errors
def export(
    run: Path = typer.Argument(..., help="run directory"),
    output: Path = typer.Option(..., "--output", help="folder to write, e.g. RUN/onnx"),
    merge: bool = typer.Option(False, "--merge", help="merge adapters into the base weights (format hf)"),
    format: str = typer.Option("hf", "--format", help="hf (a Hugging Face model folder) or onnx"),
) -> None:
    """Export a trained run: a Hugging Face folder (--format hf; --merge folds a lora/dora/ia3 adapter
    into the base weights) or an ONNX model (--format onnx)."""
    from gradtune.errors import GradtuneError

    if format == "onnx":
        from gradtune.onnx_export import export_onnx, onnx_folder

        if merge:
            raise GradtuneError("--merge applies to --format hf; an ONNX export always holds the whole model")
        result = export_onnx(run, output)  # the CLI reports the parity it measured
        out.print(f"Wrote {result.folder}/model.onnx (inputs: {', '.join(result.inputs)}; dynamic batch"
                  f"{'' if result.inputs == ['features'] else ' and sequence'} axes) with its tokenizer and "
                  f"gradtune.json; onnxruntime matches PyTorch to {result.max_abs_diff:.1e}", highlight=False)
        try:
            where = run if onnx_folder(run).resolve() == output.resolve() else output
        except GradtuneError:  # exported somewhere that `predict RUN` does not look
            where = output
        out.print(f"Predict with it: gradtune predict {where} --backend onnx --text \"...\"", highlight=False)
        return
    from gradtune.export import export as export_model

    folder = export_model(run, output, merge=merge, format=format)
    out.print(f"Wrote {folder}" + (" (adapter merged into the base weights)" if merge else ""))


@app.command()
@friendly_errors
def generate(
    run: Path = typer.Argument(..., help="run directory of a causal_lm run"),
    prompt: str = typer.Option(..., "--prompt", help="the text to continue"),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens", help="most tokens to write"),
    temperature: float = typer.Option(1.0, "--temperature", help="sampling: < 1 sharper, > 1 more varied"),
    top_p: float = typer.Option(1.0, "--top-p", help="sampling: keep the likeliest tokens holding this probability"),
    greedy: bool = typer.Option(False, "--greedy", help="always the likeliest next token (deterministic)"),
    seed: int | None = typer.Option(None, "--seed", help="make a sampled text reproducible"),
) -> None:
    """Continue a prompt with a trained language model (task causal_lm)."""
    from gradtune.api import load

    text = load(run).generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                              greedy=greedy, seed=seed)
    print(prompt + text)


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


@app.command("compare")
@friendly_errors
def compare_command(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted key=value, applied to every variant"),
    vary: list[str] = typer.Option(..., "--vary", help="key=v1,v2,... (repeatable; every combination is trained)"),
    output: Path | None = typer.Option(None, "--output", help="folder for it all; default <output_dir>/compare"),
) -> None:
    """Train every combination of the --vary values (same seed and data) and compare them."""
    from gradtune.compare import compare, table

    result = compare(config, vary, overrides or [], output)
    out.print(table(result))
    out.print(f"Wrote {result.table_path} and plots {', '.join(p.name for p in result.plot_paths)}")


@app.command("lr-find")
@friendly_errors
def lr_find_command(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted key=value, e.g. train.batch_size=16"),
    start_lr: float = typer.Option(1e-7, "--start-lr", help="first (smallest) learning rate"),
    end_lr: float = typer.Option(10.0, "--end-lr", help="last (largest) learning rate"),
    steps: int = typer.Option(100, "--steps", help="training steps, one per learning rate"),
    output: Path | None = typer.Option(
        None, "--output", help="folder for lr_find.csv/.png; default <output_dir>/lr_find"),
) -> None:
    """Learning-rate range test on a throw-away copy of the model: suggests train.lr."""
    import shlex

    from gradtune.lr_find import find_lr

    result = find_lr(config, overrides or [], start_lr=start_lr, end_lr=end_lr, steps=steps, output=output)
    lr = f"{result.suggestion:.1e}"
    kept = [o for o in overrides or [] if not o.startswith("train.lr=")]
    command = shlex.join(["gradtune", "train", str(config), *kept, f"train.lr={lr}"])
    out.print(f"Tried {len(result.lrs)} learning rates; wrote {result.csv_path} and {result.png_path}", markup=False)
    out.print(f"suggested learning rate: {lr}  ->  {command}", markup=False, highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
def gradcheck(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted key=value, e.g. model.hidden_sizes=[8]"),
    params: int = typer.Option(5, "--params", help="entries checked per trainable tensor (seeded sample)"),
    batch: int = typer.Option(4, "--batch", help="examples in the batch the loss is taken on"),
    eps: float = typer.Option(1e-6, "--eps", help="finite-difference step"),
    tol: float = typer.Option(1e-5, "--tol", help="largest relative error that passes"),
) -> None:
    """Check backpropagation: autograd's gradient against central finite differences, in float64."""
    from gradtune.gradcheck import check_gradients

    report = check_gradients(config, overrides or [], params_per_tensor=params, batch_size=batch, eps=eps, tol=tol)
    table = Table(title=f"gradient check: {report.examples} examples, loss {report.loss:.6g}, eps {eps:g}")
    table.add_column("tensor")
    table.add_column("shape")
    table.add_column("entries checked", justify="right")
    table.add_column("worst relative error", justify="right")
    table.add_column("ok")
    for row in report.rows:
        ok = "[red]FAIL" if not row.ok else "ok (round-off)" if row.roundoff_limited else "[green]ok"
        table.add_row(row.tensor, "x".join(map(str, row.shape)) or "scalar", str(row.checked),
                      f"{row.worst_rel_error:.2e}", ok)
    out.print(table)
    for note in report.notes:
        out.print(f"[yellow]note: {note}")
    failed = [r for r in report.rows if not r.ok]
    if report.passed:
        # the worst of the tensors whose errors were resolved (round-off-limited ones are noted above)
        worst = max((r for r in report.rows if not r.roundoff_limited), key=lambda r: r.worst_rel_error,
                    default=report.worst)
        out.print(f"PASS: backward agrees with finite differences on all {len(report.rows)} tensors "
                  f"(worst relative error {worst.worst_rel_error:.2e} in {worst.tensor}, tol {tol:g})",
                  highlight=False, markup=False)
        return
    for row in failed:
        out.print(f"{row.tensor}{list(row.worst_entry)}: autograd {row.autograd:.6g}, finite difference "
                  f"{row.numeric:.6g}", highlight=False, markup=False)
    out.print(f"FAIL: {len(failed)} of {len(report.rows)} tensors disagree beyond tol {tol:g}: "
              f"{', '.join(r.tensor for r in failed)}", highlight=False, markup=False)
    raise typer.Exit(1)


def main() -> None:
    app(prog_name="gradtune")


if __name__ == "__main__":
    sys.exit(main())
