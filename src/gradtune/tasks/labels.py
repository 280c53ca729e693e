"""Label helpers shared by the tasks that predict labels (classification, multilabel, tabular with
classes): the label vocabulary, label maps for the model head, the error for a label that training
never saw, and the probability columns of a prediction file."""

from __future__ import annotations

from typing import Any

from gradtune.errors import GradtuneError


def missing(value: Any) -> bool:
    """An empty cell: None, or NaN (how `datasets` reads an empty cell of a number column)."""
    return value is None or (isinstance(value, float) and value != value)


def as_key(value: Any) -> Any:
    # a column of integers with a gap is read as floats (1.0); treat 1.0 as the integer 1
    return int(value) if isinstance(value, float) and value.is_integer() else value


def label_names(values: list[Any]) -> list[str]:
    """The label vocabulary of the training labels: integers sorted numerically, strings sorted.
    Names are always strings, as in a Hugging Face config's id2label."""
    distinct = {as_key(v) for v in values if not missing(v)}
    if all(isinstance(v, int) and not isinstance(v, bool) for v in distinct):
        return [str(v) for v in sorted(distinct)]
    return sorted(str(v) for v in distinct)


def column_values(train_ds: Any, column: str, held_out: Any = None) -> list[Any]:
    """Every value of `column` in the training file: the training rows and a data.validation_split
    part (`held_out`), so that the label vocabulary does not depend on the split."""
    return list(train_ds[column]) + (list(held_out[column]) if held_out is not None else [])


def renamed(values: list[str], names: list[str] | dict[str, str], where: str) -> list[str]:
    """The display names of the label `values` (in label order): data.label_names as a list in that
    order, or a mapping value -> name. GradtuneError if they do not fit the data."""
    if isinstance(names, dict):
        names = {str(as_key(k) if not isinstance(k, str) else k): v for k, v in names.items()}
        unknown, absent = [k for k in names if k not in values], [v for v in values if v not in names]
        if unknown or absent:
            problems = ([f"names label(s) {', '.join(map(repr, unknown))} that {where} does not have"] if unknown
                        else []) + ([f"has no name for {', '.join(map(repr, absent))}"] if absent else [])
            raise GradtuneError(f"data.label_names {' and '.join(problems)}; the labels are {', '.join(values)}")
        out = [names[v] for v in values]
    else:
        if len(names) != len(values):
            raise GradtuneError(f"data.label_names has {len(names)} name(s) but {where} has {len(values)} labels: "
                                f"{', '.join(values)}; give one name per label, in this order (or a mapping "
                                "label: name)")
        out = list(names)
    repeated = sorted({n for n in out if out.count(n) > 1})
    if repeated:
        raise GradtuneError(f"data.label_names gives the name(s) {', '.join(map(repr, repeated))} to more than one "
                            "label; each label needs its own name")
    return out


def label_ids(labels: list[str]) -> dict[str, int]:
    return {name: i for i, name in enumerate(labels)}


def unknown_label(name: Any, label2id: dict[str, int]) -> ValueError:
    """The error for a label the training data never had (the caller adds file, row, column)."""
    return ValueError(f"label {name!r} never appears in the training data (known labels: "
                      f"{', '.join(label2id)}); fix the label or add examples of it to the training file")


def head_kwargs(labels: list[str]) -> dict[str, Any]:
    """A classification head's size and label maps, as a Hugging Face config keeps them."""
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": label_ids(labels)}


def probability_columns(probabilities: dict[str, float]) -> dict[str, str]:
    """A prediction file's columns for the probability of each label: prob_<label>."""
    return {f"prob_{name}": f"{p:.6f}" for name, p in probabilities.items()}
