"""One optimisation step of a GLiNER model: forward, loss, backward, clipped AdamW step.

The encoder(s) and the heads learn at separate rates, as in the GLiNER recipe; bias and
LayerNorm weights get no weight decay. ``Trainer.step`` computes the GLiNER NER loss;
``Trainer.apply`` runs the same optimisation step on any loss (the linker's contrastive loss),
so every trainable component shares one optimizer setup, schedule and clipping.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

import torch

from ..modeling.model import GlinerModel
from .batches import TrainingBatch
from .losses import span_classification_loss, token_classification_loss
from .settings import TrainingSettings


def _is_encoder_parameter(name: str) -> bool:
    return name.startswith(("text_encoder.transformer.", "label_encoder.transformer."))


def _no_decay(name: str) -> bool:
    return name.endswith(".bias") or "LayerNorm" in name or "layer_norm" in name


class Trainer:
    """``extra_parameters``: parameters outside the GLiNER model (e.g. the linker's score mixing
    weights), trained at their own ``extra_lr`` (``head_lr`` when None), without weight decay.
    A learning rate of 0 freezes those parameters (``requires_grad`` off): e.g. ``encoder_lr = 0``
    trains the heads on fixed encoders, without the cost of a backward pass through them."""

    def __init__(self, model: GlinerModel, settings: TrainingSettings,
                 extra_parameters: Iterable[torch.nn.Parameter] = (), extra_lr: Optional[float] = None):
        self.model = model
        self.settings = settings
        groups = {}
        for name, parameter in model.named_parameters():
            lr = settings.encoder_lr if _is_encoder_parameter(name) else settings.head_lr
            if lr == 0:
                parameter.requires_grad_(False)  # frozen: no backward pass through it at all
            if not parameter.requires_grad:
                continue
            decay = 0.0 if _no_decay(name) else settings.weight_decay
            groups.setdefault((lr, decay), []).append(parameter)
        self.extra_parameters = list(extra_parameters)
        if self.extra_parameters:
            groups.setdefault((settings.head_lr if extra_lr is None else extra_lr, 0.0), []).extend(self.extra_parameters)
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

        def compute() -> torch.Tensor:
            label_vectors = label_vectors_fn() if label_vectors_fn is not None else None
            return self.loss(batch, label_vectors)

        return self.apply(compute)

    def apply(self, compute_loss: Callable[[], torch.Tensor]) -> float:
        """One update on the loss ``compute_loss()`` returns (called with the model in training
        mode): backward, clipping over every trained parameter, AdamW and schedule steps."""
        self.model.train()
        try:
            loss = compute_loss()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"training loss is {loss.item()}; lower the learning rates")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(list(self.model.parameters()) + self.extra_parameters, self.settings.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.steps += 1
            return float(loss.item())
        finally:
            self.model.eval()
