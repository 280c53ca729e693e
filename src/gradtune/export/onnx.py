"""ONNX: export a trained run to one self-contained folder (inference/onnx_runtime.py runs it).

`export_onnx(run, out)` writes `out/model.onnx` (inputs named as the tokenizer names them, output
`logits`, the batch and sequence axes dynamic) next to the tokenizer, gradtune.json, label_map.json
and config.json, so the folder alone predicts. The conventional place is `RUN/onnx`, where
`Predictor(run, backend="onnx")` looks for it. Supported: BERT-like encoders (classification,
regression, multilabel; token_type_ids is an input when the tokenizer makes it), the from-scratch
rnn/lstm/gru text models and the tabular MLP; another model is exported if the exporter can, and
anything that fails or does not match is an error, never a silently wrong file.

Every export is checked before the folder is complete: onnxruntime and PyTorch must agree on a
batch of another size and other lengths than the traced one."""

from __future__ import annotations

import logging
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradtune.data.batching import logits_of
from gradtune.errors import GradtuneError
from gradtune.folders import writable_folder
from gradtune.inference.onnx_runtime import OnnxModel, require
from gradtune.rundir import LABEL_MAP, METADATA, ONNX_MODEL, RunDir

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TOLERANCE = 1e-4  # largest |onnxruntime - torch| logit difference the export check accepts
# two batches unlike each other in size and lengths: one to trace, one to check the dynamic axes
TRACE_TEXTS = ["a short text", "a somewhat longer text, so that the batch is padded"]
CHECK_TEXTS = ["one", "a third text of a middling length", "and the longest of the three texts in this batch"]


class PaddedRecurrent(nn.Module):
    """The recurrent model's forward without packed sequences, which torch.export cannot trace
    (their shapes depend on the lengths). The same weights, the same numbers: the real tokens are
    moved to the front as the model does, every layer and direction runs over the padded batch
    (a real token's state never depends on the padding after it), and the backward direction runs on
    each sequence reversed within its own length."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, c, rnn = model, model.config, model.rnn
        self.directions = 2 if c.bidirectional else 1
        self.cells = nn.ModuleList()
        for layer in range(c.num_layers):
            for suffix in ("", "_reverse")[: self.directions]:
                size = c.embedding_size if layer == 0 else c.hidden_size * self.directions
                extra = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
                cell = type(rnn)(size, c.hidden_size, batch_first=True, **extra)
                cell.load_state_dict({k: getattr(rnn, k.replace("_l0", f"_l{layer}{suffix}"))
                                      for k in cell.state_dict()})
                self.cells.append(cell)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        real = attention_mask.long()
        count = real.sum(dim=1, keepdim=True)
        # a scatter, not the model's stable argsort: real tokens first, then the padding, each in order
        target = torch.where(real.bool(), real.cumsum(1) - 1, count + (1 - real).cumsum(1) - 1)
        ids = torch.zeros_like(input_ids).scatter(1, target, input_ids)
        steps = torch.arange(ids.shape[1], device=ids.device)[None, :]
        mask = steps < count
        last = count.clamp(min=1) - 1  # an empty row is read as its first token, as when packed
        reverse = torch.where(steps <= last, last - steps, steps)  # its own inverse
        x = self.model.embeddings(ids)
        for layer in range(len(self.cells) // self.directions):
            outs = [self.cells[layer * self.directions](x)[0]]
            if self.directions == 2:
                flip = reverse[:, :, None].expand(-1, -1, x.shape[-1])
                back = self.cells[layer * 2 + 1](x.gather(1, flip))[0]
                outs.append(back.gather(1, reverse[:, :, None].expand(-1, -1, back.shape[-1])))
            x = torch.cat(outs, dim=-1)
        h = self.model.config.hidden_size
        if self.model.config.pooling == "last":  # forward state at the last real token, backward at the first
            pooled = x.gather(1, last[:, :, None].expand(-1, 1, x.shape[-1]))[:, 0, :h]
            if self.directions == 2:
                pooled = torch.cat([pooled, x[:, 0, h:]], dim=-1)
        elif self.model.config.pooling == "mean":
            pooled = (x * mask[:, :, None]).sum(dim=1) / count.clamp(min=1).to(x.dtype)
        else:
            pooled = x.masked_fill(~mask[:, :, None], float("-inf")).max(dim=1).values
        return self.model.head(self.model.drop(pooled))


class Logits(nn.Module):
    """A model with named tensor inputs and one output, the logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return logits_of(self.model(input_ids=input_ids, attention_mask=attention_mask, **extra))


class FeatureLogits(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features=features).logits


def _exportable(predictor: Any) -> tuple[nn.Module, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The module to export, a batch to trace it on and another batch to check it on."""
    from gradtune.models.mlp import MLPForSequenceClassification
    from gradtune.models.recurrent import RecurrentForSequenceClassification

    model, meta = predictor.model.float().cpu().eval(), predictor.metadata
    if isinstance(model, MLPForSequenceClassification):
        n = model.config.num_features
        return FeatureLogits(model), {"features": torch.randn(2, n)}, {"features": torch.randn(5, n)}

    def batch(texts: list[str], longest: int) -> dict[str, torch.Tensor]:
        pairs = list(reversed(texts)) if meta.get("text_pair_column") else None
        enc = predictor.tokenizer(texts, pairs, truncation=True, max_length=longest, padding=True,
                                  return_tensors="pt")
        return {k: enc[k] for k in TEXT_INPUTS if k in enc and k in names}

    # traced on a shorter batch than the check's, so a sequence length fixed by the trace shows
    short, longest = min(8, meta["max_length"]), meta["max_length"]
    if isinstance(model, RecurrentForSequenceClassification):
        names = TEXT_INPUTS[:2]
        return PaddedRecurrent(model).eval(), batch(TRACE_TEXTS, short), batch(CHECK_TEXTS, longest)
    import inspect

    names = set(inspect.signature(model.forward).parameters)
    if not {"input_ids", "attention_mask"} <= names:
        raise GradtuneError(f"{type(model).__name__}: ONNX export supports models that take input_ids and "
                            "attention_mask (BERT-like encoders, rnn/lstm/gru) or features (mlp)")
    return Logits(model).eval(), batch(TRACE_TEXTS, short), batch(CHECK_TEXTS, longest)


def _export(module: nn.Module, trace: dict[str, torch.Tensor], path: Path, opset: int, longest: Any) -> None:
    """A recurrent model goes through the TorchScript exporter, which maps nn.RNN / LSTM / GRU onto
    ONNX's own RNN / LSTM / GRU ops with a dynamic sequence axis (torch.export unrolls the time loop
    to the traced length). Everything else goes through torch.export, which follows transformers'
    attention-mask code where the tracer bakes some of it in as constants."""
    names = list(trace)
    if isinstance(module, PaddedRecurrent):
        axes = {**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}}
        torch.onnx.export(module, tuple(trace[n] for n in names), str(path), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=min(opset, 17), dynamo=False)
        return
    batch = torch.export.Dim("batch")
    # a position past the model's table would fail the trace's guards: bound the axis up front
    sequence = torch.export.Dim("sequence", max=longest) if isinstance(longest, int) else torch.export.Dim("sequence")
    shapes = {n: {0: batch} if n == "features" else {0: batch, 1: sequence} for n in names}
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "torchvision is not installed" notes
    try:
        torch.onnx.export(module, (), str(path), kwargs=trace, input_names=names, output_names=["logits"],
                          dynamic_shapes=shapes, opset_version=opset, dynamo=True,
                          external_data=size > 1.5e9, verbose=False)  # one protobuf file holds < 2 GB
    finally:
        logger.setLevel(level)


@dataclass
class OnnxExport:
    """What `export_onnx` wrote, and how well onnxruntime matched PyTorch on the check batch."""

    folder: Path
    inputs: list[str]
    max_abs_diff: float


def export_onnx(run: str | Path, output_dir: str | Path, opset: int = 18) -> OnnxExport:
    """Export the run's model to `output_dir/model.onnx` with a dynamic batch (and sequence) axis, copy
    the tokenizer, gradtune.json, label_map.json and config.json beside it, and check the result."""
    from gradtune.inference.predictor import Predictor

    require("onnxscript")
    require("onnxruntime")
    out = writable_folder(output_dir, "--output")  # checked before the work
    predictor = Predictor(run, device="cpu")
    if not predictor.task.onnx:
        raise GradtuneError(f"task {predictor.task.name!r}: its model writes its targets token by token (generation), "
                            "which the ONNX export (one forward pass to logits) does not cover; predict with the torch "
                            "backend, or export --format hf")
    if out.resolve() == predictor.path.resolve():
        raise GradtuneError(f"--output {out}: that is the run's model folder; export next to it, e.g. "
                            f"{RunDir(predictor.path.parent).onnx}")
    module, trace, check = _exportable(predictor)
    name, path = type(predictor.model).__name__, out / ONNX_MODEL
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporters' deprecation and tracer notes
            _export(module, trace, path, opset, getattr(predictor.model.config, "max_position_embeddings", None))
    except Exception as e:  # the exporters raise many types; the first line says what failed
        path.unlink(missing_ok=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GradtuneError(f"{name} could not be exported to ONNX: {first}") from None
    session = OnnxModel(path)
    # the batch axis, and a text model's sequence axis, must have stayed symbolic
    fixed = [i.name for i in session.session.get_inputs()
             if any(isinstance(d, int) for d in i.shape[: 1 if i.name == "features" else 2])]
    diff = math.inf
    if not fixed:
        with torch.no_grad():
            expected = module(**check).numpy()
        try:
            diff = float(np.abs(expected - session.logits({k: v.numpy() for k, v in check.items()})).max())
        except Exception as e:  # onnxruntime refuses the check batch: a shape was fixed inside the graph
            fixed = [str(e).strip().splitlines()[0]]
    if fixed or not diff <= TOLERANCE * max(1.0, float(np.abs(expected).max())):
        path.unlink()
        why = (f"the graph fixed the shape of {', '.join(fixed)}" if fixed else
               f"onnxruntime's logits differ from PyTorch's by {diff:.2e} on a check batch")
        raise GradtuneError(f"{name} does not export faithfully to ONNX: {why}")
    if predictor.tokenizer is not None:
        predictor.tokenizer.save_pretrained(out)
    for name in (METADATA, LABEL_MAP, "config.json"):
        if (predictor.path / name).is_file():
            shutil.copy2(predictor.path / name, out / name)
    return OnnxExport(out, list(trace), diff)
