"""Turn relation scores into relations, exactly as the reference GLiNER decoder does.

Input tensors come from :class:`spacy_gliner.modeling.relations.head.RelationHead`
(or the reference model's ``rel_logits`` / ``rel_idx`` / ``rel_mask`` /
``entity_spans`` outputs):

* ``rel_logits`` (B, N, R) - relation logits per candidate pair and relation label;
* ``pair_index`` (B, N, 2) - (head, tail) indices into the *model's* entity list
  (the packed, threshold-selected spans), -1 on padding;
* ``pair_mask`` (B, N) - True for real pairs;
* ``entity_spans`` (B, E, 2) - word-level (start, end-inclusive) of each model entity.

Rules (``SpanRelexDecoder._decode_relations`` in gliner 0.2.29):

1. probabilities are ``sigmoid(rel_logits)``;
2. for each sample, pairs are visited in pair order (row-major by head, then
   tail, as produced by the pairing step) and, within a pair, labels in
   ascending label index;
3. masked pairs and pairs with a negative index are skipped;
4. a label is kept unless ``prob <= relation_threshold`` (i.e. strictly greater
   wins; a NaN probability is kept, as in the reference) and the
   label index is valid for the sample (``label < num_relation_labels[b]``; the
   relation-label axis is padded to the batch maximum when samples have
   different label lists);
5. model entity indices are mapped to positions in the sample's *decoded*
   entity list (after flat-NER / greedy filtering) by exact (start, end)
   boundary match, first decoded span wins; a relation whose head or tail has
   no decoded counterpart is dropped.  Without ``entity_spans`` the model
   indices are used directly and must be ``< len(decoded spans)`` (the
   reference's legacy fallback).

Several labels may be emitted for the same pair; there is no per-pair argmax,
no symmetric de-duplication, and no type constraint on head / tail entities.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "DecodedRelation",
    "relation_probabilities",
    "decode_relation_candidates",
    "map_model_entities_to_decoded",
    "decode_relations",
]

Threshold = Union[float, Sequence[float]]


class DecodedRelation(NamedTuple):
    """One relation: indices into an entity list, relation label index, probability.

    ``pair_index`` is the candidate-pair slot it came from (useful for fetching
    pair representations; -1 when the relation was merged from several windows),
    ``label`` indexes the sample's relation label list.
    """

    head: int
    tail: int
    label: int
    score: float
    pair_index: int = -1


def _per_sample(value, batch_size: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != batch_size:
            raise ValueError(f"{name} must have length {batch_size}, got {len(value)}")
        return list(value)
    return [value] * batch_size


def relation_probabilities(rel_logits: torch.Tensor) -> torch.Tensor:
    """``sigmoid(rel_logits)`` - the relation scores reported by the reference."""
    return torch.sigmoid(rel_logits)


def decode_relation_candidates(
    rel_logits: torch.Tensor,
    pair_index: torch.Tensor,
    pair_mask: Optional[torch.Tensor] = None,
    threshold: Threshold = 0.5,
    num_relation_labels: Union[None, int, Sequence[int]] = None,
) -> List[List[DecodedRelation]]:
    """Relations per sample, with head / tail as *model* entity indices.

    Args:
        rel_logits: (B, N, R).
        pair_index: (B, N, 2) long.
        pair_mask: (B, N) bool, or None for "all pairs real".
        threshold: relation threshold, one float or one per sample.
        num_relation_labels: number of real relation labels, one int or one per
            sample; None means all R labels are real.

    Returns: for each sample, a list of :class:`DecodedRelation` in reference
    order (pair order, then label order).
    """
    B = rel_logits.size(0)
    R = rel_logits.size(-1)
    if pair_mask is None:
        pair_mask = torch.ones(pair_index.shape[:2], dtype=torch.bool, device=pair_index.device)
    thresholds = _per_sample(threshold, B, "threshold")
    label_counts = _per_sample(R if num_relation_labels is None else num_relation_labels, B, "num_relation_labels")
    probs = relation_probabilities(rel_logits)
    out: List[List[DecodedRelation]] = []
    for b in range(B):
        limit = min(int(label_counts[b]), R)
        sample = probs[b, :, :limit]
        usable = pair_mask[b].bool() & (pair_index[b, :, 0] >= 0) & (pair_index[b, :, 1] >= 0)
        # "not <=" on purpose: the reference skips only scores <= threshold, so a NaN score is kept;
        # and in float64, as the reference compares Python floats (a float32 cast of the threshold
        # could turn a score just above it into one equal to it)
        keep = ~(sample.double() <= float(thresholds[b])) & usable.unsqueeze(1)
        where = torch.nonzero(keep)  # row-major: pair order, then label order
        scores = sample[keep].tolist()
        ends = pair_index[b, where[:, 0]].tolist()
        found = [
            DecodedRelation(head, tail, label, score, j)
            for (j, label), (head, tail), score in zip(where.tolist(), ends, scores)
        ]
        out.append(found)
    return out


def map_model_entities_to_decoded(
    entity_spans: torch.Tensor,
    decoded_spans: Sequence[Sequence[Tuple[int, int]]],
) -> List[Dict[int, int]]:
    """For each sample, model entity index -> position in ``decoded_spans[b]``.

    ``decoded_spans[b]`` lists the (start, end-inclusive) word boundaries of the
    sample's final entities, in output order.  Matching is by exact boundary;
    the first decoded span with a boundary wins (relevant with multi-label
    output, where one boundary can appear several times).
    """
    spans = entity_spans.tolist()
    mappings: List[Dict[int, int]] = []
    for b, decoded in enumerate(decoded_spans):
        position: Dict[Tuple[int, int], int] = {}
        for i, (start, end) in enumerate(decoded):
            position.setdefault((int(start), int(end)), i)
        mapping: Dict[int, int] = {}
        for e, (start, end) in enumerate(spans[b]):
            if (start, end) in position:
                mapping[e] = position[(start, end)]
        mappings.append(mapping)
    return mappings


def decode_relations(
    rel_logits: torch.Tensor,
    pair_index: torch.Tensor,
    pair_mask: Optional[torch.Tensor],
    decoded_spans: Sequence[Sequence[Tuple[int, int]]],
    entity_spans: Optional[torch.Tensor] = None,
    threshold: Threshold = 0.5,
    num_relation_labels: Union[None, int, Sequence[int]] = None,
) -> List[List[DecodedRelation]]:
    """Final relations per sample, head / tail indexing ``decoded_spans[b]``.

    This reproduces the reference's relation output: the reference's
    ``(head_idx, label, tail_idx, score)`` tuple corresponds to our
    ``(head, tail, label, score)`` with ``label`` the label *index* (the
    reference's label string is ``relation_labels[b][label]``).
    """
    candidates = decode_relation_candidates(rel_logits, pair_index, pair_mask, threshold, num_relation_labels)
    if entity_spans is not None:
        mappings: List[Optional[Dict[int, int]]] = list(map_model_entities_to_decoded(entity_spans, decoded_spans))
    else:
        mappings = [None] * len(candidates)
    out: List[List[DecodedRelation]] = []
    for b, found in enumerate(candidates):
        mapping = mappings[b]
        n_decoded = len(decoded_spans[b])
        kept: List[DecodedRelation] = []
        for rel in found:
            if mapping is not None:
                head = mapping.get(rel.head)
                tail = mapping.get(rel.tail)
                if head is None or tail is None:
                    continue
            else:
                head, tail = rel.head, rel.tail
                if head >= n_decoded or tail >= n_decoded:
                    continue
            kept.append(DecodedRelation(head, tail, rel.label, rel.score, rel.pair_index))
        out.append(kept)
    return out
