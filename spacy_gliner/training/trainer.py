"""One optimisation step of a GLiNER model: forward, loss, backward, clipped AdamW step.

The encoder(s) and the heads learn at separate rates, as in the GLiNER recipe; bias and
LayerNorm weights get no weight decay. ``Trainer.step`` computes the GLiNER NER loss;
``Trainer.apply`` runs the same optimisation step on any loss (the linker's contrastive loss),
so every trainable component shares one optimizer setup, schedule and clipping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional

import torch

from ..modeling.model import GlinerModel
from .batches import TrainingBatch
from .losses import span_classification_loss, token_classification_loss
from .settings import TrainingSettings


def _is_encoder_parameter(name: str) -> bool:
    return name.startswith(("text_encoder.transformer.", "label_encoder.transformer."))


def _can_fuse(groups) -> bool:
    """The fused AdamW kernel (one pass per tensor: 3x faster on CPU than the per-tensor loop
    PyTorch picks by default there) takes float parameters on CPU or CUDA only."""
    params = [p for group in groups for p in group]
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


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
            [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()],
            fused=_can_fuse(groups.values()),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.steps = 0

    def _lr_factor(self, step: int) -> float:
        warmup, total = self.settings.warmup_steps, self.settings.total_steps
        if warmup and step < warmup:
            return (step + 1) / warmup
        if not total or self.settings.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if self.settings.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    def loss(self, batch: TrainingBatch, label_vectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The GLiNER loss of one batch (no gradient step)."""
        if batch.word_vectors is not None:
            num_words = batch.encoded.num_words.to(self.model.device)
            word_mask = torch.arange(batch.word_vectors.size(1), device=self.model.device).unsqueeze(0) < num_words.unsqueeze(1)
            reps = self.model.represent_word_vectors(batch.word_vectors, word_mask)
        else:
            reps = self.model.represent(batch.encoded.to(self.model.device))
        # spans past a sentence's end are masked out of the loss: not computing them is the same loss
        # post-fusion models: labels attend to each other, so a sample's padded labels are masked out
        label_mask = batch.label_mask.to(self.model.device)
        if self.model.config.is_token_decoder:
            return self.token_decoder_loss(reps, batch, label_vectors, label_mask)
        if hasattr(self.model, "label_decoder"):
            return self.span_decoder_loss(reps, batch, label_vectors, label_mask)
        return self.entity_loss(self.model.score(reps, label_vectors, only_valid_spans=True, label_mask=label_mask), batch)

    def span_decoder_loss(self, reps, batch: TrainingBatch, label_vectors, label_mask) -> torch.Tensor:
        """Generative-decoder models, as the reference trains them: ``decoder_loss_coef`` x the
        decoder's loss of writing each gold span's label + ``span_loss_coef`` x the span loss
        (the span loss alone when the batch has no gold span)."""
        from ..modeling.label_decoder import reference_prefix_length

        config, device = self.model.config, self.model.device
        logits, span_reps = self.model.score_spans(reps, label_vectors, only_valid_spans=True, label_mask=label_mask)
        span_loss = self.entity_loss(logits, batch)
        targets = batch.decoder
        if targets is None:
            return span_loss
        selected = targets.selected.to(device)
        per_example = torch.bincount(targets.selected[:, 0], minlength=len(targets.word_tokens)).tolist()
        floor = reference_prefix_length(
            per_example, span_reps.shape[1] * span_reps.shape[2], targets.word_tokens, list(map(len, targets.prompt_tokens)),
            config.max_width,
        )
        decoder = self.model.label_decoder
        label_length = targets.label_ids.shape[1] - 1  # teacher-forced after the prefix
        prefix, prefix_mask = decoder.prefixes(span_reps, selected, targets.word_tokens, floor, label_length)
        decoder_loss = decoder.label_loss(prefix, prefix_mask, targets.label_ids.to(device), targets.label_mask.to(device))
        return decoder_loss * config.decoder_loss_coef + span_loss * config.span_loss_coef

    def token_decoder_loss(self, reps, batch: TrainingBatch, label_vectors, label_mask) -> torch.Tensor:
        """Token-level decoder models, as the reference trains them: the token loss and the span
        layer's loss on the batch's span table combine as ``token_loss_coef`` x token +
        ``span_loss_coef`` x span; with gold spans, ``decoder_loss_coef`` x the decoder's loss of
        writing their labels is added to that sum times ``token_loss_coef`` again (the reference
        weights it twice)."""
        from ..modeling.label_decoder import token_span_contexts

        config, device, table = self.model.config, self.model.device, batch.span_table
        token_loss = self.entity_loss(self.model.score(reps, label_vectors, label_mask=label_mask), batch)
        span_logits, span_vectors = self.model.score_token_spans(reps, table.span_idx.to(device), label_vectors)
        span_loss = token_classification_loss(
            span_logits, table.span_labels.to(device), label_mask, table.span_mask.to(device), **self.focal_settings()
        )
        loss = config.token_loss_coef * token_loss + config.span_loss_coef * span_loss
        targets = batch.decoder
        if targets is None:
            return loss
        span_tokens, floor = None, 0
        if config.full_decoder_context:
            span_tokens, floor = token_span_contexts(
                table.spans(), targets.selected.tolist(), targets.word_tokens, targets.prompt_tokens, targets.pad_id
            )
        rows, positions = targets.selected.to(device).unbind(-1)
        decoder = self.model.label_decoder
        label_length = targets.label_ids.shape[1] - 1  # teacher-forced after the prefix
        prefix, prefix_mask = decoder.prefix_embeddings(span_vectors[rows, positions], span_tokens, floor, label_length)
        decoder_loss = decoder.label_loss(prefix, prefix_mask, targets.label_ids.to(device), targets.label_mask.to(device))
        return decoder_loss * config.decoder_loss_coef + loss * config.token_loss_coef

    def entity_loss(self, logits: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
        """GLiNER's focal span (or token) loss of entity logits against the batch's targets."""
        device = self.model.device
        label_mask = batch.label_mask.to(device)
        if logits.size(-2 if not self.model.config.is_span_model else -1) != label_mask.size(1):
            raise ValueError("label vectors and sampled labels disagree in number")
        common = self.focal_settings()
        if self.model.config.is_span_model:
            return span_classification_loss(
                logits, batch.targets.to(device), label_mask, batch.position_mask.to(device), **common
            )
        return token_classification_loss(logits, batch.targets.to(device), label_mask, batch.position_mask.to(device), **common)

    def focal_settings(self) -> Dict[str, object]:
        """The element-wise loss settings every classification loss here takes."""
        s = self.settings
        return dict(alpha=s.focal_alpha, gamma=s.focal_gamma, label_smoothing=s.label_smoothing, reduction=s.reduction)

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


@dataclass
class RelexLossSettings:
    """Weights and focal parameters of the relex losses (reference ``span_loss_coef``,
    ``adjacency_loss_coef``, ``relation_loss_coef``, ``rel_focal_loss_alpha/gamma``)."""

    span_loss_coef: float = 1.0
    adjacency_loss_coef: float = 1.0
    relation_loss_coef: float = 1.0
    relation_focal_alpha: Optional[float] = None  # None: the entity focal_alpha
    relation_focal_gamma: Optional[float] = None  # None: the entity focal_gamma


class RelexTrainer(Trainer):
    """Relex models: ``span_loss_coef * entity loss + adjacency_loss_coef * adjacency loss +
    relation_loss_coef * relation loss``, computed as the reference's ``UniEncoderSpanRelexModel``
    does in training: relation arguments are the gold spans, pairs are the gold pairs plus sampled
    negatives (teacher forcing, see :mod:`spacy_gliner.training.relex_batches`), relation prompts
    are the raw ``<<REL>>`` token vectors. A batch without relation labels trains entities only."""

    def __init__(self, model: GlinerModel, settings: TrainingSettings, relex: RelexLossSettings, rel_token_id: int):
        if not model.config.is_span_model:
            # The losses below read span-grid logits and gold span slots; the token-level relex
            # model (reference UniEncoderTokenRelexModel) trains on start/end/inside targets and
            # gold-boundary argument vectors instead, which no batch builder here produces.
            raise ValueError(
                "gliner_relex cannot train token-level relex checkpoints (span_mode 'token_level', "
                "model_type 'gliner_uni_encoder_token_relex'); they run for inference only. Train a span "
                "relex model (span_mode 'markerV0') instead, or fine-tune this one with the gliner package."
            )
        super().__init__(model, settings)
        self.relex = relex
        self.rel_token_id = rel_token_id

    def loss(self, batch, label_vectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        return sum(self.loss_parts(batch).values())

    def loss_parts(self, batch) -> Dict[str, torch.Tensor]:
        """The weighted terms of :meth:`loss`, by name: ``entity``, and with relation labels in the
        batch ``relation`` and (models with an adjacency layer) ``adjacency``."""
        from ..modeling.relations.head import relation_prompt_vectors
        from ..modeling.relations.pairing import gather_entities
        from .losses import adjacency_loss, relation_loss

        device = self.model.device
        encoded = batch.entity.encoded.to(device)
        reps = self.model.represent(encoded)
        logits, span_rep = self.model.score_spans(reps, only_valid_spans=True)
        r = self.relex
        parts = {"entity": self.entity_loss(logits, batch.entity) * r.span_loss_coef}
        pair_mask = batch.pair_mask.to(device)
        if batch.num_relation_labels and bool(pair_mask.any()):
            s = self.settings
            common = dict(
                alpha=s.focal_alpha if r.relation_focal_alpha is None else r.relation_focal_alpha,
                gamma=s.focal_gamma if r.relation_focal_gamma is None else r.relation_focal_gamma,
                label_smoothing=s.label_smoothing,
                reduction=s.reduction,
            )
            head_module = self.model.relation_head
            entities = gather_entities(span_rep, batch.entity_keep.to(device))
            rel_prompts = relation_prompt_vectors(
                reps.token_embeddings, encoded, self.rel_token_id, self.model.config.embed_rel_token,
                batch.num_relation_labels,
            )
            rel_logits = head_module(entities.rep, batch.pair_index.to(device), rel_prompts)
            rel = relation_loss(
                rel_logits, batch.relation_targets.to(device), pair_mask, batch.relation_label_mask.to(device), **common
            )
            parts["relation"] = rel * r.relation_loss_coef
            adjacency = head_module.score_adjacency(entities.rep, entities.mask)
            if adjacency is not None:
                adj = adjacency_loss(adjacency, batch.adjacency.to(device), entities.mask, **common)
                parts["adjacency"] = adj * r.adjacency_loss_coef
        return parts
