"""The reference's relation step in one batch call, written with our modules: every candidate pair
of a batch at once, with its padding, as ``UniEncoderSpanRelexGLiNER`` computes it. It is the
specification that the product's bounded path (``RelationHead.candidate_pair_blocks`` and
``RelationHead.forward`` a chunk at a time) and the reference checkpoints are checked against in
test_relations.py; the product never builds all pairs at once, so this lives with the tests."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import torch

from spacy_gliner.modeling.relations.pairing import EntitySelection, gather_entities, select_entities


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


@dataclass
class RelationHeadOutput:
    """Everything the relation part produces for one batch.

    entities: the selected relation arguments (see :class:`EntitySelection`).
    adjacency: (B, E, E) adjacency probabilities, or None when
        ``relations_layer == "none"``.
    pairs: the candidate pairs (see :class:`CandidatePairs`), N pairs.
    rel_logits: (B, N, R) relation logits (apply sigmoid for probabilities;
        for triple scorers these are the raw triple scores).
    pair_rep: (B, N, D) projected pair representations (pair-projection
        models only), else None.
    """

    entities: EntitySelection
    adjacency: Optional[torch.Tensor]
    pairs: CandidatePairs
    rel_logits: torch.Tensor
    pair_rep: Optional[torch.Tensor] = None


def make_pairs(
    head,
    entity_rep: torch.Tensor,
    entity_mask: torch.Tensor,
    adjacency: Optional[torch.Tensor],
    adjacency_threshold: float = 0.5,
) -> CandidatePairs:
    """Candidate pairs: by adjacency threshold, or all pairs without an adjacency layer."""
    if head.adjacency_scorer is None or adjacency is None:
        return all_candidate_pairs(entity_rep, entity_mask)
    return candidate_pairs_from_adjacency(adjacency, entity_rep, adjacency_threshold)



def reference_forward(
    head,
    span_rep: torch.Tensor,
    span_mask: torch.Tensor,
    rel_prompts: torch.Tensor,
    span_idx: Optional[torch.Tensor] = None,
    *,
    span_logits: Optional[torch.Tensor] = None,
    entity_prompts: Optional[torch.Tensor] = None,
    entity_keep: Optional[torch.Tensor] = None,
    threshold: float = 0.5,
    adjacency_threshold: Optional[float] = None,
) -> RelationHeadOutput:
    """The reference's relation part in one batch call, every candidate pair at once, with its
    padding: the specification the streamed inference (:meth:`candidate_pair_blocks` and
    :meth:`forward` per chunk) and the reference checkpoints are checked against.

    Args:
        span_rep: (B, W, K, D) span representations.
        span_mask: (B, W*K) or (B, W, K) valid-span mask.
        rel_prompts: (B, R, D) raw ``<<REL>>`` token embeddings (after the
            encoder's output projection, NOT through ``prompt_rep_layer``).
        span_idx: (B, W*K, 2) word-level (start, end-inclusive) per span;
            only needed to report ``entities.spans``.
        span_logits: (B, W, K, C) entity logits; or give
        entity_prompts: (B, C, D) projected entity prompts to compute them.
        entity_keep: (B, W*K) bool - pair exactly these spans instead of the
            reference's threshold selection.
        threshold: entity threshold for the reference selection.
        adjacency_threshold: pair threshold; defaults to ``threshold`` (as
            in the reference's ``inference``).
    """
    if adjacency_threshold is None:
        adjacency_threshold = threshold
    if entity_keep is not None:
        entities = gather_entities(
            span_rep,
            entity_keep.reshape(span_rep.size(0), -1).bool() & span_mask.reshape(span_rep.size(0), -1).bool(),
            span_idx,
        )
    else:
        if span_logits is None:
            if entity_prompts is None:
                raise ValueError("pass span_logits or entity_prompts (or entity_keep)")
            span_logits = span_logits_from_prompts(span_rep, entity_prompts)
        entities = select_entities(span_rep, span_logits, span_mask, span_idx, threshold)
    adjacency = head.score_adjacency(entities.rep, entities.mask)
    pairs = make_pairs(head, entities.rep, entities.mask, adjacency, adjacency_threshold)
    rel_logits, pair_rep = head.score_relations(pairs.head, pairs.tail, rel_prompts)
    return RelationHeadOutput(
        entities=entities, adjacency=adjacency, pairs=pairs, rel_logits=rel_logits, pair_rep=pair_rep
    )
