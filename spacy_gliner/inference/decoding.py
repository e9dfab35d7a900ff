"""From logits to spans: thresholding, window ownership and greedy selection.

Behaviour follows the reference package: a (span, label) pair is a candidate when its sigmoid
score is strictly above the threshold; candidates are taken in descending score order (ties keep
position order) and a candidate is dropped when it conflicts with one already taken. Flat
decoding forbids any overlap; nested decoding forbids only crossing spans. With ``multi_label``
the same span may carry several labels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .windows import Window


@dataclass(frozen=True)
class DecodedSpan:
    start: int  # first word, document offsets
    end: int  # one past the last word
    label: int  # index into the label list
    score: float
    # generative-decoder models: the labels the decoder wrote for this span, best first
    generated: Optional[Tuple[str, ...]] = field(default=None, compare=False)


def span_candidates(
    logits, windows: Sequence[Window], threshold: float, label_ids=None, best_label_only: bool = False
) -> Dict[int, List[DecodedSpan]]:
    """Candidates from span-model logits (B, W, K, C), grouped by document; a candidate's score
    is its probability, ``sigmoid(logit)``, and it passes when that exceeds ``threshold``.

    ``label_ids`` maps the C scored labels to the caller's label ids: (C,) shared or (B, C) per
    window (default: their positions). ``best_label_only`` keeps only each span's best label,
    which is exact when a span may carry one label: greedy selection could never take the others.
    The sigmoid is then applied to each span's best logit (it is monotonic: that is the span's
    best probability, bit for bit) and to the labels of passing spans only. Vectorised: one
    ``nonzero`` over the batch; only spans above the threshold reach Python.
    """
    import torch

    if best_label_only:
        passing = torch.sigmoid(logits.max(dim=-1).values) > threshold
        batch_idx, start_idx, width_idx = torch.nonzero(passing, as_tuple=True)
        # probabilities of the passing spans only; ties (e.g. several labels at 1.0) go to the
        # first label, as when every probability is computed
        scores, label_idx = torch.sigmoid(logits[batch_idx, start_idx, width_idx]).max(dim=-1)
    else:
        probs = torch.sigmoid(logits)
        batch_idx, start_idx, width_idx, label_idx = torch.nonzero(probs > threshold, as_tuple=True)
        scores = probs[batch_idx, start_idx, width_idx, label_idx]
    by_doc: Dict[int, List[DecodedSpan]] = {}
    if batch_idx.numel() == 0:
        return by_doc
    scores = scores.float().cpu().numpy()
    batch_idx, start_idx, width_idx, label_idx = (t.cpu().numpy() for t in (batch_idx, start_idx, width_idx, label_idx))
    if label_ids is not None:
        label_ids = np.asarray(label_ids)
        label_idx = label_ids[batch_idx, label_idx] if label_ids.ndim == 2 else label_ids[label_idx]
    lengths = np.array([w.length for w in windows])
    offsets = np.array([w.start for w in windows])
    own_start = np.array([w.own_start for w in windows])
    own_end = np.array([w.own_end for w in windows])
    doc_start = offsets[batch_idx] + start_idx
    keep = (start_idx + width_idx + 1 <= lengths[batch_idx]) & (doc_start >= own_start[batch_idx]) & (
        doc_start < own_end[batch_idx]
    )
    doc_index = np.array([w.doc_index for w in windows])[batch_idx[keep]]
    starts, ends = doc_start[keep], doc_start[keep] + width_idx[keep] + 1
    for d, s, e, c, score in zip(doc_index.tolist(), starts.tolist(), ends.tolist(), label_idx[keep].tolist(), scores[keep].tolist()):
        by_doc.setdefault(d, []).append(DecodedSpan(s, e, c, score))
    return by_doc


def token_candidates(logits, windows: Sequence[Window], threshold: float, label_ids=None) -> Dict[int, List[DecodedSpan]]:
    """Candidates from token-level logits (B, W, C, 3): start, end and inside scores.

    A span runs from a start above the threshold to an end above it (same label), every word
    inside scoring at least the threshold; its score is the minimum of all of those.
    """
    import torch

    probs = torch.sigmoid(logits.float()).cpu().numpy()
    by_doc: Dict[int, List[DecodedSpan]] = {}
    for b, window in enumerate(windows):
        n = window.length
        start_p, end_p, inside_p = probs[b, :n, :, 0], probs[b, :n, :, 1], probs[b, :n, :, 2]
        starts = np.argwhere(start_p > threshold)  # rows: (position, label), position-major
        ends = np.argwhere(end_p > threshold)
        if not len(starts) or not len(ends):
            continue
        spans = by_doc.setdefault(window.doc_index, [])
        for st, label in starts:
            doc_start = window.start + st
            if not window.own_start <= doc_start < window.own_end:
                continue
            for ed, end_label in ends:
                if ed < st or end_label != label:
                    continue
                inside = inside_p[st : ed + 1, label]
                if (inside < threshold).any():
                    continue
                score = min(float(inside.min()), float(start_p[st, label]), float(end_p[ed, label]))
                label_id = int(label) if label_ids is None else int(label_ids[label])
                spans.append(DecodedSpan(int(doc_start), int(window.start + ed + 1), label_id, score))
    return by_doc


def token_spans(logits, threshold: float) -> List[List[Tuple[int, int]]]:
    """Spans (start, end inclusive) that token-level logits (B, W, C, 3) describe, per window, in
    the reference's order (token-level decoder models, ``extract_spans_from_tokens``): for one
    label, a start and an end above the threshold with every word between them inside above it.
    Start words go in position order, then label; a span found for two labels appears twice.
    Every one of the W positions is read, as the reference reads them."""
    import torch

    probs = torch.sigmoid(logits.float())
    starts, ends, inside = (probs[..., channel] > threshold for channel in range(3))
    inside_before = torch.nn.functional.pad(inside.long().cumsum(dim=1), (0, 0, 1, 0))  # (B, W + 1, C)
    found: List[List[Tuple[int, int]]] = []
    for b in range(probs.size(0)):
        start_pos, start_label = starts[b].nonzero(as_tuple=True)
        end_pos, end_label = ends[b].nonzero(as_tuple=True)
        pairs = (start_label[:, None] == end_label[None, :]) & (start_pos[:, None] <= end_pos[None, :])
        s, e = pairs.nonzero(as_tuple=True)
        first, last, label = start_pos[s], end_pos[e], start_label[s]
        complete = inside_before[b, last + 1, label] - inside_before[b, first, label] == last - first + 1
        found.append(list(zip(first[complete].tolist(), last[complete].tolist())))
    return found


def greedy_select(candidates: Sequence[DecodedSpan], nested: bool, multi_label: bool) -> List[DecodedSpan]:
    """The reference's greedy search with per-word bookkeeping of taken spans.

    Any taken span that overlaps a candidate covers one of the candidate's words, so checking the
    spans recorded on those words finds every conflict without comparing against all taken spans.
    """
    ordered = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)
    covering: Dict[int, List[tuple]] = {}  # word -> taken (start, end) spans covering it
    taken_spans = set()
    chosen: List[DecodedSpan] = []
    for i in ordered:
        span = candidates[i]
        key = (span.start, span.end)
        if key in taken_spans:
            if not multi_label:
                continue
            chosen.append(span)
            continue
        conflict = False
        for word in range(span.start, span.end):
            for other in covering.get(word, ()):
                if not nested or not (
                    (other[0] <= span.start and span.end <= other[1]) or (span.start <= other[0] and other[1] <= span.end)
                ):
                    conflict = True
                    break
            if conflict:
                break
        if conflict:
            continue
        chosen.append(span)
        taken_spans.add(key)
        for word in range(span.start, span.end):
            covering.setdefault(word, []).append(key)
    chosen.sort(key=lambda s: s.start)
    return chosen


def best_non_overlapping(spans: Sequence[DecodedSpan]) -> List[DecodedSpan]:
    """The highest-scoring spans that do not overlap, for ``doc.ents``."""
    return greedy_select(spans, nested=False, multi_label=False)


def merge_adjacent_same_label(spans: Sequence[DecodedSpan]) -> List[DecodedSpan]:
    """Join runs of neighbouring spans (the next starts at the word where the previous ends) that
    carry the same label, keeping the first span's score.

    NuNER Zero predicts one word at a time (``max_width`` 1) and its model card joins neighbouring
    words of one label into a single entity this way; spans arrive sorted by start.
    """
    merged: List[DecodedSpan] = []
    for span in spans:
        last = merged[-1] if merged else None
        if last is not None and last.label == span.label and last.end == span.start:
            merged[-1] = DecodedSpan(last.start, span.end, last.label, last.score)
        else:
            merged.append(span)
    return merged
