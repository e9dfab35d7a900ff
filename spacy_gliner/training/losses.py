"""Training losses of the GLiNER recipe, as plain PyTorch functions.

These functions reproduce, number for number, the loss computation of the
reference ``gliner`` package (0.2.29): ``gliner.modeling.loss_functions`` and the
``_loss`` / ``loss`` methods of ``gliner.modeling.base`` (span models and token
models).  ``tests/training/test_training_recipe.py`` checks the equality on random tensors.

This module imports torch at module level: import it lazily, from training code
only.

Shapes
------
* ``B`` batch size, ``W`` words (span start positions), ``K`` max span width,
  ``C`` prompt labels (entity types), ``N`` a flat number of spans.
* Span models: ``scores`` / ``targets`` ``(B, W, K, C)``; span ``(b, w, k)``
  covers words ``w .. w + k`` (inclusive).  ``span_mask`` ``(B, W, K)`` is 1 for
  spans that lie inside the sentence, ``label_mask`` ``(B, C)`` is 1 for real
  (non-padding) prompt labels of each example.
* Token models: ``scores`` / ``targets`` ``(B, W, C, 3)`` (start, end, inside
  channels) or ``(B, N, C)`` (span head), ``word_mask`` ``(B, W)`` or ``(B, N)``.

Differences from the reference (documented, deliberate)
-------------------------------------------------------
* An unknown ``reduction`` raises ``ValueError`` (the reference warns and sums);
  ``reduction="none"`` returns the masked element-wise loss (the reference sums).
* ``generator`` lets callers draw the negative-masking Bernoulli variables from
  their own ``torch.Generator``.  With ``generator=None`` the draws come from the
  global generator in the same order and shape as the reference, so identical
  ``torch.manual_seed`` gives identical results.
* The reference *bi-encoder* span loss (``BiEncoderSpanModel.loss``) passes its
  ``label_smoothing`` argument in the ``prob_margin`` position of ``_loss``: in the
  reference bi-encoder, ``label_smoothing=s`` therefore means ``prob_margin=s`` and no
  smoothing, and ``prob_margin`` / ``loss_type`` / ``use_span_width_weight`` are
  ignored.  ``span_classification_loss`` implements the intended (uni-encoder)
  semantics; call it with ``prob_margin=s, label_smoothing=0`` to reproduce the
  reference bi-encoder exactly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Optional, TypedDict, Union

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "contrastive_linking_loss",
    "focal_loss_with_logits",
    "span_dice_loss",
    "negative_sampling_mask",
    "elementwise_loss",
    "span_classification_loss",
    "token_classification_loss",
    "adjacency_loss",
    "relation_loss",
    "FocalSettings",
    "MASKING_MODES",
    "REDUCTIONS",
]

MASKING_MODES = ("none", "global", "label", "span")
REDUCTIONS = ("sum", "mean", "none")
LOSS_TYPES = ("focal", "bce", "dice")


class FocalSettings(TypedDict, total=False):
    """The element-wise loss settings every task loss takes as keywords and hands to
    :func:`elementwise_loss` unchanged; a setting left out keeps that function's default
    (``alpha=-1, gamma=0``: plain BCE; no smoothing, no margin, no negative masking)."""

    alpha: float
    gamma: float
    prob_margin: float
    label_smoothing: float
    negatives: float
    masking: str
    generator: Optional[torch.Generator]


def _check_focal_settings(loss_name: str, settings: Mapping[str, object]) -> None:
    unknown = sorted(set(settings) - set(FocalSettings.__annotations__))
    if unknown:
        raise TypeError(f"{loss_name}() got unexpected keyword arguments {unknown}")


def _reduce(loss: torch.Tensor, n_valid: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / n_valid
    raise ValueError(f"reduction must be one of 'none', 'mean', 'sum', got {reduction!r}")


def _reduce_masked(loss: torch.Tensor, n_valid: torch.Tensor, reduction: str) -> torch.Tensor:
    """``_reduce`` for losses already multiplied by their mask: a mean over no valid cell is 0."""
    if reduction == "mean" and n_valid <= 0:
        return loss.new_zeros(())
    return _reduce(loss, n_valid, reduction)


def focal_loss_with_logits(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    prob_margin: float = 0.0,
    reduction: str = "none",
    label_smoothing: float = 0.0,
    normalize_prob: bool = True,
    ignore_index: int = -100,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Binary focal loss on logits, element-wise (same shape as ``inputs``).

    ``p = sigmoid(inputs)`` (or ``inputs`` when ``normalize_prob=False``);
    ``pm = clamp(p - prob_margin, 0, 1)`` is used for the negative term only;
    targets are smoothed towards 0.5 by ``label_smoothing``;
    ``loss = -(t log p + (1 - t) log(1 - pm))`` (logs clamped at ``eps``), times
    ``(1 - p_t) ** gamma`` when ``gamma > 0`` with ``p_t = p t + (1 - pm)(1 - t)``,
    times ``alpha t + (1 - alpha)(1 - t)`` when ``alpha >= 0``.  Elements whose
    (unsmoothed) target equals ``ignore_index`` contribute 0; ``reduction="mean"``
    divides by the number of non-ignored elements.
    """
    valid = targets != ignore_index
    if label_smoothing != 0:
        with torch.no_grad():
            targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    p = torch.sigmoid(inputs) if normalize_prob else inputs
    p_neg = (p - prob_margin).clamp(min=0.0, max=1.0)

    log_p = torch.log(p.clamp(min=eps))
    log_not_p = torch.log((1.0 - p_neg).clamp(min=eps))
    loss = -(targets * log_p) - (1.0 - targets) * log_not_p
    loss = loss * valid

    if gamma > 0:
        p_t = p * targets + (1.0 - p_neg) * (1.0 - targets)
        loss = loss * (1.0 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1.0 - alpha) * (1.0 - targets)) * loss

    return _reduce(loss, valid.sum(), reduction)


def span_dice_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 1.0,
    reduction: str = "none",
    ignore_index: int = -100,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Element-wise self-adjusting Dice loss (Li et al. 2020), as the reference's.

    ``q = (1 - p) ** gamma * p`` with ``p = sigmoid(inputs)``,
    ``loss = 1 - (2 q y + eps) / (q + y + eps)``; ``mean`` divides by
    ``max(1, #valid)``.
    """
    valid = (targets != ignore_index).float()
    p = torch.sigmoid(inputs)
    y = targets.clamp(min=0.0)
    q = (1.0 - p).pow(gamma) * p
    loss = (1.0 - (2.0 * q * y + eps) / (q + y + eps)) * valid
    return _reduce(loss, valid.sum().clamp(min=1), reduction)


def _bernoulli_like(x: torch.Tensor, prob: float, generator: Optional[torch.Generator]) -> torch.Tensor:
    if generator is None:
        draws = torch.rand_like(x)
    else:
        draws = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (draws < prob).float()


def negative_sampling_mask(
    targets: torch.Tensor,
    negatives: float = 1.0,
    masking: str = "none",
    generator: Optional[torch.Generator] = None,
) -> Union[torch.Tensor, float]:
    """Stochastic down-sampling of negative loss terms (reference ``_loss``).

    ``targets`` is ``(B, S, C)`` (spans flattened).  Returns a multiplicative mask of
    the same shape, or the float ``1.0`` when ``masking="none"``:

    * ``"global"``: every element with target 0 is kept with probability ``negatives``;
    * ``"label"``: for each ``(b, c)`` whose label has no positive span in example
      ``b``, every element of that column is kept with probability ``negatives``;
    * ``"span"``: for each ``(b, s)`` span with no positive label, every element of
      that row is kept with probability ``negatives``.

    One uniform draw per element in all modes (so ``"label"``/``"span"`` drop
    element-wise within the all-negative rows/columns, exactly like the reference).
    """
    if masking == "none":
        return 1.0
    ones = torch.ones_like(targets)
    if masking == "global":
        keep = _bernoulli_like(targets, negatives, generator)
        return torch.where(targets == 0, keep, ones)
    if masking == "label":
        all_negative = (targets.sum(dim=1) == 0).unsqueeze(1).expand_as(targets)
    elif masking == "span":
        all_negative = (targets.sum(dim=2) == 0).unsqueeze(2).expand_as(targets)
    else:
        raise ValueError(f"masking must be one of {MASKING_MODES}, got {masking!r}")
    proposals = all_negative.float()
    keep = _bernoulli_like(proposals, negatives, generator)
    return torch.where(all_negative, keep, torch.ones_like(proposals))


def elementwise_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = -1.0,
    gamma: float = 0.0,
    prob_margin: float = 0.0,
    label_smoothing: float = 0.0,
    negatives: float = 1.0,
    masking: str = "none",
    normalize_prob: bool = True,
    loss_type: str = "focal",
    dice_gamma: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Element-wise loss with negative masking (reference ``BaseModel._loss``).

    ``loss_type="focal"`` (and ``"bce"``, which is the focal loss with whatever
    ``alpha``/``gamma`` the caller passes; use ``alpha=-1, gamma=0`` for plain BCE)
    or ``"dice"`` (:func:`span_dice_loss` with ``dice_gamma``).
    """
    if loss_type == "dice":
        losses = span_dice_loss(logits, targets, gamma=dice_gamma, reduction="none")
    elif loss_type in ("focal", "bce"):
        losses = focal_loss_with_logits(
            logits,
            targets,
            alpha=alpha,
            gamma=gamma,
            prob_margin=prob_margin,
            label_smoothing=label_smoothing,
            normalize_prob=normalize_prob,
        )
    else:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    return losses * negative_sampling_mask(targets, negatives, masking, generator)


def span_classification_loss(
    scores: torch.Tensor,
    targets: torch.Tensor,
    label_mask: torch.Tensor,
    span_mask: torch.Tensor,
    reduction: str = "sum",
    loss_type: str = "focal",
    dice_gamma: float = 1.0,
    use_span_width_weight: bool = False,
    **focal: Unpack[FocalSettings],
) -> torch.Tensor:
    """Span-classification loss of GLiNER span models (reference ``UniEncoderSpanModel.loss``).

    Args:
        scores: logits ``(B, W, K, C)``.
        targets: 0/1 targets ``(B, W, K, C)`` (float).
        label_mask: ``(B, C)``, 1 for real prompt labels, 0 for padding labels.
        span_mask: ``(B, W, K)``, 1 for spans inside the sentence.
        reduction: ``"sum"`` (reference default), ``"mean"`` (divides by the number of
            valid *spans*, not span x label cells, like the reference; 0 when there is
            none) or ``"none"`` (masked ``(B, W, K, C)`` tensor).
        loss_type, dice_gamma: see :func:`elementwise_loss`.
        use_span_width_weight: multiply the loss of positive cells by
            ``1 + log(k + 1)`` for the 0-based width index ``k``.
        focal: :class:`FocalSettings` (focal-loss parameters, and negative down-sampling by
            :func:`negative_sampling_mask`).

    Returns:
        A scalar (or ``(B, W, K, C)`` for ``reduction="none"``).
    """
    _check_focal_settings("span_classification_loss", focal)
    if scores.dim() != 4:
        raise ValueError(f"scores must be (B, W, K, C), got shape {tuple(scores.shape)}")
    B, W, K, C = scores.shape
    if targets.shape != scores.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} != scores shape {tuple(scores.shape)}")
    if label_mask.shape[-1] != C:
        raise ValueError(f"label_mask has {label_mask.shape[-1]} labels, scores have {C}")

    flat_scores = scores.reshape(B, W * K, C)
    flat_targets = targets.reshape(B, W * K, C)
    losses = elementwise_loss(flat_scores, flat_targets, loss_type=loss_type, dice_gamma=dice_gamma, **focal)
    if use_span_width_weight:
        widths = torch.arange(1, K + 1, dtype=scores.dtype, device=scores.device)
        boost = (torch.log(widths) + 1.0).view(1, 1, K, 1)
        weights = 1.0 + (boost - 1.0) * targets.clamp(min=0.0)
        losses = losses * weights.reshape(B, W * K, C)

    losses = losses * label_mask.unsqueeze(1).to(losses.dtype)
    valid_spans = span_mask.reshape(B, W * K, 1).float()
    losses = losses * valid_spans

    if reduction == "none":
        return losses.reshape(B, W, K, C)
    return _reduce_masked(losses, valid_spans.sum(), reduction)


def _masked_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    reduction: str,
    focal: Mapping[str, object],
    normalize_prob: bool = True,
) -> torch.Tensor:
    """:func:`elementwise_loss` zeroed outside ``mask`` and reduced over ``mask``'s cells."""
    losses = elementwise_loss(logits, targets, normalize_prob=normalize_prob, **focal) * mask
    return _reduce_masked(losses, mask.sum(), reduction)


def token_classification_loss(
    scores: torch.Tensor,
    targets: torch.Tensor,
    label_mask: torch.Tensor,
    word_mask: torch.Tensor,
    reduction: str = "sum",
    **focal: Unpack[FocalSettings],
) -> torch.Tensor:
    """Loss of GLiNER token models (reference ``UniEncoderTokenModel.loss``).

    Args:
        scores: ``(B, W, C, 3)`` start/end/inside logits, or ``(B, N, C)`` span logits.
        targets: same shape, 0/1.
        label_mask: ``(B, C)``.
        word_mask: ``(B, W)`` (or ``(B, N)`` for span logits).
        reduction: ``"sum"``, ``"mean"`` (divides by the number of valid
            word x label pairs, *not* x3, like the reference) or ``"none"``.
        focal: :class:`FocalSettings`; the reference token loss never masks negatives
            (``masking="none"``, where ``negatives`` has no effect); ``"global"`` is accepted
            as an extension.
    """
    _check_focal_settings("token_classification_loss", focal)
    if scores.dim() not in (3, 4):
        raise ValueError(f"scores must be (B, W, C, 3) or (B, N, C), got {tuple(scores.shape)}")
    if focal.get("masking", "none") not in ("none", "global"):
        raise ValueError("token_classification_loss supports masking 'none' or 'global'")
    mask = word_mask.unsqueeze(-1) * label_mask.unsqueeze(1)
    if scores.dim() == 4:
        mask = mask.unsqueeze(-1)
    return _masked_loss(scores, targets, mask.float(), reduction, focal)


def adjacency_loss(
    adjacency: torch.Tensor,
    targets: torch.Tensor,
    entity_mask: torch.Tensor,
    reduction: str = "sum",
    **focal: Unpack[FocalSettings],
) -> torch.Tensor:
    """Adjacency loss of relex models (reference ``UniEncoderSpanRelexModel.adj_loss``).

    ``adjacency`` (B, E, E) holds *probabilities* (the adjacency layers end in a sigmoid), so the
    focal loss reads them as they are (``normalize_prob=False``). ``targets`` (B, E, E) is 1 for
    every pair the relation loss is trained on (gold pairs and the sampled negative pairs, as in
    the reference), 0 elsewhere. Every (i, j) of real entities counts, the diagonal included;
    ``mean`` divides by their number.
    """
    _check_focal_settings("adjacency_loss", focal)
    B = adjacency.size(0)
    m = entity_mask.to(adjacency.dtype)
    pair_mask = (m.unsqueeze(2) * m.unsqueeze(1)).reshape(B, -1, 1)
    return _masked_loss(
        adjacency.reshape(B, -1, 1), targets.reshape(B, -1, 1).to(adjacency.dtype), pair_mask,
        reduction, focal, normalize_prob=False,
    )


def relation_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pair_mask: torch.Tensor,
    label_mask: torch.Tensor,
    reduction: str = "sum",
    **focal: Unpack[FocalSettings],
) -> torch.Tensor:
    """Relation classification loss (reference ``UniEncoderSpanRelexModel.rel_loss``).

    ``logits``/``targets`` (B, N, R): N candidate pairs, R prompted relation labels; ``pair_mask``
    (B, N) marks real pairs, ``label_mask`` (B, R) real (non-padding) relation labels of each
    example. ``mean`` divides by the number of real pair x label cells.
    """
    _check_focal_settings("relation_loss", focal)
    cells = pair_mask.to(logits.dtype).unsqueeze(-1) * label_mask.to(logits.dtype).unsqueeze(1)
    return _masked_loss(logits, targets.to(logits.dtype), cells, reduction, focal)


def span_width_weights(max_width: int) -> list:
    """The positive-cell weights ``1 + log(k)`` for widths ``k = 1..max_width``."""
    return [1.0 + math.log(k) for k in range(1, max_width + 1)]


def contrastive_linking_loss(
    logits: torch.Tensor,
    gold: torch.Tensor,
    candidate_mask: torch.Tensor,
    in_batch_negatives: bool = True,
    binary_weight: float = 1.0,
) -> torch.Tensor:
    """The linker's loss over mentions (rows) and the entities of a batch (columns).

    ``logits`` (M, N): ``link_logits`` of every mention against every entity of the batch
    (the union of all mentions' golds and candidates). ``gold`` (M,): the column of each
    mention's gold entity, or -1 for a NIL mention. ``candidate_mask`` (M, N): the mention's
    own candidates and its gold.

    * InfoNCE / softmax cross-entropy for every linked mention: its gold against its own
      candidates, and against every other entity of the batch with ``in_batch_negatives``
      (the other mentions' golds and candidates, free: their vectors are computed anyway).
      The temperature is inside ``logits``.
    * Binary cross-entropy on ``sigmoid(logits)`` over each mention's own candidates (gold 1,
      others 0; every candidate of a NIL mention 0), weighted by ``binary_weight``: softmax
      alone fixes only differences between logits, this term places them around 0 so that
      the linker's ``threshold`` on ``sigmoid`` (NIL below it) means something.

    The two parts are means over mentions (InfoNCE) and over candidate pairs (binary).
    """
    if logits.dim() != 2 or gold.shape != logits.shape[:1] or candidate_mask.shape != logits.shape:
        raise ValueError(f"shapes disagree: logits {tuple(logits.shape)}, gold {tuple(gold.shape)}, "
                         f"candidate_mask {tuple(candidate_mask.shape)}")
    candidate_mask = candidate_mask.bool()
    linked = gold >= 0
    total = logits.new_zeros(())
    if linked.any():
        rows = logits[linked]
        allowed = torch.ones_like(rows, dtype=torch.bool) if in_batch_negatives else candidate_mask[linked]
        rows = rows.masked_fill(~allowed, float("-inf"))
        total = total + F.cross_entropy(rows, gold[linked])
    if binary_weight and candidate_mask.any():
        targets = torch.zeros_like(logits)
        index = torch.nonzero(linked).squeeze(-1)
        targets[index, gold[linked]] = 1.0
        pairs = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")[candidate_mask]
        total = total + binary_weight * pairs.mean()
    return total
