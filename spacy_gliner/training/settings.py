"""Training settings shared by the trainable components (no torch here: imported at spaCy start-up)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional


SCHEDULES = ("linear", "cosine", "constant")


@dataclass
class TrainingSettings:
    encoder_lr: float = 1e-5
    head_lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_steps: int = 0
    total_steps: Optional[int] = None  # decay to 0 over this many steps; None = constant after warm-up
    schedule: str = "linear"  # after warm-up: "linear" or "cosine" decay to 0 at total_steps, or "constant"
    grad_clip: float = 10.0
    focal_alpha: float = 0.75
    focal_gamma: float = 0.0
    label_smoothing: float = 0.0
    reduction: str = "sum"


def check_training_settings(owner: str, given: Dict[str, Any], defaults: Dict[str, Any]) -> Dict[str, Any]:
    """A component's ``training`` block merged over its defaults; unknown keys and negative
    learning rates are errors naming the component and the allowed keys."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{owner} 'training': unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(defaults)}.")
    merged = {**defaults, **given}
    for key in ("encoder_lr", "head_lr"):
        if key in merged and (not isinstance(merged[key], (int, float)) or merged[key] < 0):
            raise ValueError(f"{owner} 'training.{key}' must be a non-negative number, got {merged[key]!r}.")
    if "schedule" in merged and merged["schedule"] not in SCHEDULES:
        raise ValueError(f"{owner} 'training.schedule' must be one of {', '.join(SCHEDULES)}, got {merged['schedule']!r}.")
    return merged


def optimizer_settings(merged: Dict[str, Any]) -> "TrainingSettings":
    """The :class:`TrainingSettings` part of a component's merged ``training`` block."""
    return TrainingSettings(**{k: merged[k] for k in TrainingSettings.__dataclass_fields__ if k in merged})
