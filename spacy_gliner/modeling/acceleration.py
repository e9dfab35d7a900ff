"""Optional inference speed-ups: int8 dynamic quantisation (CPU), reduced precision, torch.compile.

All are off by default because each changes the numbers: float32 without them is what matches
the reference package. They apply to the transformer encoders, where the time goes; the small
heads stay in float32 (the span head reads its weights in halves, which quantised linears do
not expose).
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Dict, Optional

import torch

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTIZATIONS = (None, "int8")


def check_acceleration(quantize: Optional[str], precision: str, compile: bool, owner: str) -> None:
    """Validate the settings (at ``add_pipe``): names the bad value and the allowed ones."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"{owner} 'quantize' must be null or 'int8', got {quantize!r}.")
    if precision not in PRECISIONS:
        raise ValueError(f"{owner} 'precision' must be one of {sorted(PRECISIONS)}, got {precision!r}.")
    if not isinstance(compile, bool):
        raise ValueError(f"{owner} 'compile' must be true or false, got {compile!r}.")
    if quantize is not None and precision != "float32":
        raise ValueError(f"{owner}: 'quantize' and a 'precision' other than float32 cannot be combined; choose one.")


def accelerated(model: torch.nn.Module, quantize: Optional[str], precision: str, compile: bool, owner: str) -> torch.nn.Module:
    """The model to run inference with: ``model`` itself when nothing is asked, else a shallow
    copy sharing every weight except the replaced encoders (the original stays intact for
    training and saving in the reference layout)."""
    check_acceleration(quantize, precision, compile, owner)
    device = next(model.parameters()).device
    if precision == "float16" and device.type == "cpu":
        raise ValueError(f"{owner}: 'precision': 'float16' needs a GPU; on CPU use 'bfloat16' or 'float32'.")
    if quantize is None and not compile:
        return model
    if quantize == "int8" and device.type != "cpu":
        raise ValueError(f"{owner}: 'quantize': 'int8' is dynamic quantisation for CPU; on {device.type} use 'precision' instead.")
    replacements = {}
    for name in ("text_encoder", "label_encoder"):
        encoder = getattr(model, name, None)
        if encoder is None:
            continue
        if quantize == "int8":
            with warnings.catch_warnings():  # torch 2.13 flags its quantised tensor types as deprecated
                warnings.simplefilter("ignore", UserWarning)
                encoder = torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
        if compile:
            encoder = torch.compile(encoder, dynamic=True)
        replacements[name] = encoder
    return with_encoders(model, replacements)


def with_encoders(model: torch.nn.Module, replacements: Dict[str, torch.nn.Module]) -> torch.nn.Module:
    """A shallow copy of ``model`` sharing every weight, but with the submodules named in
    ``replacements`` swapped for others; the original keeps its own (for training and saving)."""
    view = copy.copy(model)
    view._modules = dict(model._modules)
    for name, module in replacements.items():
        setattr(view, name, module)
    return view


def precision_context(precision: str, device: torch.device):
    """Autocast for the forward passes when a reduced precision is chosen."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
