"""Relation arguments and candidate pairs (pure tensor functions): which spans become the entity
list a relex model pairs, packed in flat span order, and which directed (head, tail) pairs of it
are classified."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Tuple

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


@dataclass
class CandidatePairs:
    """Directed entity pairs to classify.

    ``index``: (B, N, 2) long ``(head, tail)`` entity indices, -1 on padding;
    ``mask``: (B, N) bool; ``head`` / ``tail``: (B, N, D) representations
    (padding rows hold entity 0's representation, or zeros when no sample in the
    batch has any pair - then N == 1).
    """

    index: torch.Tensor
    mask: torch.Tensor
    head: torch.Tensor
    tail: torch.Tensor


def span_logits_from_prompts(span_rep: torch.Tensor, entity_prompts: torch.Tensor) -> torch.Tensor:
    """Entity span logits ``(B, W, K, C)`` from span reps and projected entity prompts."""
    return torch.einsum("BLKD,BCD->BLKC", span_rep, entity_prompts)


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


def pairs_from_lists(
    pair_lists: Iterable[torch.Tensor], entity_rep: torch.Tensor, batch_size: int
) -> CandidatePairs:
    pair_lists = list(pair_lists)
    device = entity_rep.device
    D = entity_rep.size(-1)
    N = max((p.shape[0] for p in pair_lists), default=0)
    if N == 0:
        index = torch.full((batch_size, 1, 2), -1, dtype=torch.long, device=device)
        mask = torch.zeros((batch_size, 1), dtype=torch.bool, device=device)
        zeros = torch.zeros((batch_size, 1, D), dtype=entity_rep.dtype, device=device)
        return CandidatePairs(index=index, mask=mask, head=zeros, tail=zeros)
    index = torch.full((batch_size, N, 2), -1, dtype=torch.long, device=device)
    mask = torch.zeros((batch_size, N), dtype=torch.bool, device=device)
    for b, pairs in enumerate(pair_lists):
        index[b, : pairs.shape[0]] = pairs
        mask[b, : pairs.shape[0]] = True
    rows = torch.arange(batch_size, device=device).unsqueeze(1)
    head = entity_rep[rows, index[..., 0].clamp_min(0)]
    tail = entity_rep[rows, index[..., 1].clamp_min(0)]
    return CandidatePairs(index=index, mask=mask, head=head, tail=tail)


def candidate_pairs_from_adjacency(
    adjacency: torch.Tensor, entity_rep: torch.Tensor, adjacency_threshold: float = 0.5
) -> CandidatePairs:
    """Directed pairs ``(i, j)``, ``i != j``, with ``adjacency[b, i, j] > threshold``.

    Ordered row-major (by head, then tail).  Only the adjacency values decide -
    padded entities are excluded because the scorers zero their rows/columns.
    """
    B, E, _ = adjacency.shape
    off_diagonal = ~torch.eye(E, dtype=torch.bool, device=adjacency.device)
    pair_lists = [torch.nonzero((adjacency[b] > adjacency_threshold) & off_diagonal) for b in range(B)]
    return pairs_from_lists(pair_lists, entity_rep, B)


def all_candidate_pairs(entity_rep: torch.Tensor, entity_mask: torch.Tensor) -> CandidatePairs:
    """Every directed pair of distinct real entities (``relations_layer="none"``)."""
    B = entity_rep.size(0)
    counts = entity_mask.long().sum(dim=1).tolist()
    pair_lists = []
    for n in counts:
        if n < 2:
            pair_lists.append(torch.zeros(0, 2, dtype=torch.long, device=entity_rep.device))
            continue
        off_diagonal = ~torch.eye(n, dtype=torch.bool, device=entity_rep.device)
        pair_lists.append(torch.nonzero(off_diagonal))
    return pairs_from_lists(pair_lists, entity_rep, B)
