"""Token-level relex checkpoints (reference ``UniEncoderTokenRelexModel``): choosing the relation
arguments from start/end/inside token scores and turning them into span vectors.

Everything after the entity list (adjacency, pairing, the pair cap, relation scoring, decoding and
merging windows) is the span relex code in :mod:`spacy_gliner.inference.relations`; this module only
replaces how that entity list is built (``docs/relex_reference.md`` §9):

1. logits are the token scorer's (B, W, C, 3) start/end/inside scores against the *projected*
   entity prompts (the token relex model keeps the span model's label projection);
2. a relation argument is a word span (s, e) with, for one label c, ``sigmoid(start[s, c])``,
   ``sigmoid(end[e, c])`` and ``sigmoid(inside[i, c])`` for every s <= i <= e all ``> threshold``
   (the reference's ``extract_spans_from_tokens``). Arguments are listed by start word, label,
   end word; a span that qualifies under several labels is listed once per label, as in the
   reference (duplicates have identical vectors, and attention-style adjacency layers see them);
3. the argument vectors are the span layer applied to the (start, end) words (``TokenMarker``).

The reference also scans the batch's padding words (a window shorter than the longest in its
batch can gain arguments made of padding, which then shift attention-style adjacency scores of
real ones); we scan each window's own words only, so results do not depend on batching.
"""
from __future__ import annotations

import warnings
from typing import List, Optional, Sequence, Tuple

import torch

from ..modeling.relations.pairing import EntitySelection


def token_relation_arguments(
    logits: torch.Tensor, num_words: Sequence[int], threshold: float
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Per window: the relation arguments' (E, 2) word (start, end inclusive) and their (E,) label
    index, in the reference's order (start word, label, end word)."""
    probs = torch.sigmoid(logits)
    out = []
    for b, n in enumerate(num_words):
        start_ok, end_ok, inside_ok = (probs[b, :n, :, k] > threshold for k in range(3))
        starts = start_ok.nonzero()  # (S, 2) rows (word, label), word-major
        ends = end_ok.nonzero()
        if not starts.size(0) or not ends.size(0):
            empty = torch.zeros((0,), dtype=torch.long, device=logits.device)
            out.append((empty.view(0, 2), empty))
            continue
        paired = (starts[:, 1:2] == ends[:, 1].view(1, -1)) & (starts[:, 0:1] <= ends[:, 0].view(1, -1))
        si, ei = paired.nonzero(as_tuple=True)
        s, e, c = starts[si, 0], ends[ei, 0], starts[si, 1]
        # every word of the span must be inside: count them with a cumulative sum per label
        inside_count = torch.nn.functional.pad(inside_ok.long().cumsum(0), (0, 0, 1, 0))
        whole = (inside_count[e + 1, c] - inside_count[s, c]) == (e - s + 1)
        out.append((torch.stack((s[whole], e[whole]), dim=1), c[whole]))
    return out


def argument_scores(logits: torch.Tensor, b: int, spans: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The decoder's score of each argument: the minimum of its start, end and inside
    probabilities (a range minimum per argument, via a sparse table over the words)."""
    probs = torch.sigmoid(logits[b])  # (W, C, 3)
    inside = probs[..., 2]
    table = [inside]
    width = 1
    while 2 * width <= inside.size(0):
        previous = table[-1]
        table.append(torch.minimum(previous[:-width], previous[width:]))
        width *= 2
    s, e = spans[:, 0], spans[:, 1]
    length = e - s + 1
    level = torch.floor(torch.log2(length.double())).long()
    inside_min = torch.empty(spans.size(0), dtype=inside.dtype, device=inside.device)
    for k in level.unique().tolist():
        rows = level == k
        tk = table[k]
        inside_min[rows] = torch.minimum(tk[s[rows], labels[rows]], tk[e[rows] - (1 << k) + 1, labels[rows]])
    return torch.minimum(inside_min, torch.minimum(probs[s, labels, 0], probs[e, labels, 1]))


def token_entities(
    model, words: torch.Tensor, logits: torch.Tensor, num_words: Sequence[int], threshold: float,
    max_entities: Optional[int] = None,
) -> EntitySelection:
    """The relation arguments of a batch of windows, packed (B, E, ...), with their span vectors.

    ``max_entities`` (opt-in) keeps at most that many per window: the ones with the highest
    decoder scores, still in reference order, with a warning naming the setting.
    """
    found = token_relation_arguments(logits, num_words, threshold)
    most = max((spans.size(0) for spans, _ in found), default=0)
    if max_entities is not None and most > max_entities:
        warn_entity_cap(most, max_entities, "the most probable ones were kept")
        capped = []
        for b, (spans, labels) in enumerate(found):
            if spans.size(0) > max_entities:
                keep = argument_scores(logits, b, spans, labels).topk(max_entities).indices.sort().values
                spans, labels = spans[keep], labels[keep]
            capped.append((spans, labels))
        found = capped
    return entities_at(model, words, [spans for spans, _ in found])


def entities_at(model, words: torch.Tensor, spans_per_window: Sequence[torch.Tensor]) -> EntitySelection:
    """Span vectors of the given (E_b, 2) word spans of each window, packed and zero-padded like
    the reference (padding rows are the span (0, 0), masked out)."""
    B = words.size(0)
    E = max(1, max((spans.size(0) for spans in spans_per_window), default=0))
    span_idx = torch.zeros((B, E, 2), dtype=torch.long, device=words.device)
    mask = torch.zeros((B, E), dtype=torch.long, device=words.device)
    for b, spans in enumerate(spans_per_window):
        span_idx[b, : spans.size(0)] = spans.to(words.device)
        mask[b, : spans.size(0)] = 1
    rep = model.span_head.spans_at(words, span_idx)
    # no span-grid slot behind a token-level argument
    flat_index = torch.full((B, E), -1, dtype=torch.long, device=words.device)
    return EntitySelection(rep=rep, mask=mask, spans=span_idx, flat_index=flat_index)


def warn_entity_cap(count: int, cap: int, kept: str) -> None:
    warnings.warn(
        f"gliner_relex: a window had {count} relation arguments (entities); only {cap} take part in relations, "
        f"{kept} (config 'max_entities'). Set 'max_entities' to null (the default) to keep them all; memory "
        "stays bounded either way.",
        stacklevel=4,
    )
