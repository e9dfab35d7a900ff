"""Relation arguments and candidate pairs (pure tensor functions): which spans become the entity
list a relex model pairs, packed in flat span order, and which directed (head, tail) pairs of it
are classified."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

@dataclass
class EntitySelection:
    """Spans chosen as relation arguments, packed left in flat span order.

    ``rep``: (B, E, D); ``mask``: (B, E) long (1 = real entity); ``spans``:
    (B, E, 2) long word-level ``(start, end)`` with inclusive end (padding rows
    are ``(0, 0)``), or None; ``flat_index``: (B, E) long index into the
    flattened ``W*K`` span axis (padding rows 0).
    """

    rep: torch.Tensor
    mask: torch.Tensor
    spans: Optional[torch.Tensor]
    flat_index: torch.Tensor


def _pack_rows(values: torch.Tensor, keep: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Move the kept rows of ``values`` (B, N, ...) to the front; zero-pad to max kept."""
    B, N = keep.shape
    counts = keep.sum(dim=1)
    width = int(counts.max().item()) if B > 0 else 0
    if width == N:
        # every row kept in every sample: nothing to move
        return values, keep.long()
    packed = values.new_zeros((B, width) + tuple(values.shape[2:]))
    packed_mask = keep.new_zeros((B, width), dtype=torch.long)
    batch_idx, old_idx = torch.where(keep)
    new_idx = (keep.long().cumsum(dim=1) - 1)[keep]
    packed[batch_idx, new_idx] = values[batch_idx, old_idx]
    packed_mask[batch_idx, new_idx] = 1
    return packed, packed_mask


def gather_entities(
    span_rep: torch.Tensor,
    keep: torch.Tensor,
    span_idx: Optional[torch.Tensor] = None,
) -> EntitySelection:
    """Pack the spans flagged in ``keep`` (B, W*K) (or (B, W, K)) into an entity list.

    Use this to pair spans of your own choosing; :func:`select_entities` is the
    reference's own (threshold-based) choice.
    """
    B = span_rep.size(0)
    D = span_rep.size(-1)
    flat_rep = span_rep.reshape(B, -1, D)
    keep = keep.reshape(B, -1).bool()
    rep, mask = _pack_rows(flat_rep, keep)
    positions = torch.arange(keep.size(1), device=keep.device).unsqueeze(0).expand(B, -1)
    flat_index, _ = _pack_rows(positions.unsqueeze(-1), keep)
    spans = None
    if span_idx is not None:
        spans, _ = _pack_rows(span_idx.reshape(B, -1, 2).long(), keep)
    return EntitySelection(rep=rep, mask=mask, spans=spans, flat_index=flat_index.squeeze(-1))


def select_entities(
    span_rep: torch.Tensor,
    span_logits: torch.Tensor,
    span_mask: torch.Tensor,
    span_idx: Optional[torch.Tensor] = None,
    threshold: float = 0.5,
    top_k: Optional[int] = None,
) -> EntitySelection:
    """The reference's inference-time choice of relation arguments.

    A span is kept when ``max_c sigmoid(span_logits[b, w, k, c]) > threshold``
    and its span mask is set.  No flat-NER / overlap filtering happens here, so
    overlapping spans can all become entities.  ``top_k`` (never set by the
    reference at inference) keeps the top_k highest-probability spans, with
    rejected spans competing at -1.

    Shapes: span_rep (B, W, K, D); span_logits (B, W, K, C); span_mask
    (B, W*K) or (B, W, K); span_idx (B, W*K, 2) or None.
    """
    B = span_rep.size(0)
    span_mask = span_mask.reshape(B, -1)
    if span_logits.size(-1) > 0:
        best_prob = torch.sigmoid(span_logits).max(dim=-1).values.reshape(B, -1)
        keep = (best_prob > threshold) & span_mask.bool()
    else:
        best_prob = torch.zeros_like(span_mask, dtype=span_rep.dtype)
        keep = torch.zeros_like(span_mask, dtype=torch.bool)
    if top_k is not None and top_k > 0:
        ranked = best_prob.masked_fill(~keep, -1.0)
        chosen = ranked.topk(k=min(top_k, ranked.size(1)), dim=1).indices
        keep = torch.zeros_like(keep)
        keep.scatter_(1, chosen, True)
    if span_idx is not None:
        # the reference zeroes the boundaries of masked spans before selecting
        span_idx = span_idx.reshape(B, -1, 2) * span_mask.unsqueeze(-1).long()
    return gather_entities(span_rep, keep, span_idx)
