"""One optimisation step of a GLiNER model: forward, GLiNER loss, backward, clipped AdamW step.

The encoder(s) and the heads learn at separate rates, as in the GLiNER recipe; bias and
LayerNorm weights get no weight decay.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..modeling.model import GlinerModel
from .batches import TrainingBatch
from .losses import span_classification_loss, token_classification_loss


@dataclass
class TrainingSettings:
    encoder_lr: float = 1e-5
    head_lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_steps: int = 0
    total_steps: Optional[int] = None  # linear decay to 0 over this many steps; None = constant
    grad_clip: float = 10.0
    focal_alpha: float = 0.75
    focal_gamma: float = 0.0
    label_smoothing: float = 0.0
    reduction: str = "sum"


def _is_encoder_parameter(name: str) -> bool:
    return name.startswith(("text_encoder.transformer.", "label_encoder.transformer."))


def _no_decay(name: str) -> bool:
    return name.endswith(".bias") or "LayerNorm" in name or "layer_norm" in name


class Trainer:
    def __init__(self, model: GlinerModel, settings: TrainingSettings):
        self.model = model
        self.settings = settings
        groups = {}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            lr = settings.encoder_lr if _is_encoder_parameter(name) else settings.head_lr
            decay = 0.0 if _no_decay(name) else settings.weight_decay
            groups.setdefault((lr, decay), []).append(parameter)
        self.optimizer = torch.optim.AdamW(
            [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.steps = 0

    def _lr_factor(self, step: int) -> float:
        warmup, total = self.settings.warmup_steps, self.settings.total_steps
        if warmup and step < warmup:
            return (step + 1) / warmup
        if total:
            return max(0.0, (total - step) / max(1, total - warmup))
        return 1.0

    def loss(self, batch: TrainingBatch, label_vectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The GLiNER loss of one batch (no gradient step)."""
        device = self.model.device
        reps = self.model.represent(batch.encoded.to(device))
        logits = self.model.score(reps, label_vectors)
        label_mask = batch.label_mask.to(device)
        if logits.size(-2 if not self.model.config.is_span_model else -1) != label_mask.size(1):
            raise ValueError("label vectors and sampled labels disagree in number")
        s = self.settings
        common = dict(alpha=s.focal_alpha, gamma=s.focal_gamma, label_smoothing=s.label_smoothing, reduction=s.reduction)
        if self.model.config.is_span_model:
            return span_classification_loss(
                logits, batch.targets.to(device), label_mask, batch.position_mask.to(device), **common
            )
        return token_classification_loss(logits, batch.targets.to(device), label_mask, batch.position_mask.to(device), **common)

    def step(self, batch: TrainingBatch, label_vectors_fn=None) -> float:
        """One update; ``label_vectors_fn`` computes bi-encoder label vectors with gradients."""
        self.model.train()
        try:
            label_vectors = label_vectors_fn() if label_vectors_fn is not None else None
            loss = self.loss(batch, label_vectors)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"training loss is {loss.item()}; lower the learning rates")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.steps += 1
            return float(loss.item())
        finally:
            self.model.eval()
