"""0/1 span targets of the GLiNER training recipe, for the labels
:mod:`spacy_gliner.training.label_sampling` prompts.

Pure Python (+ numpy for the optional dense views); no torch.

Gold spans are ``(start, end, label)`` over words.  ``end_inclusive=True`` (the
default) is GLiNER's JSON convention (``[[0, 1, "person"]]`` covers words 0 and 1);
pass ``end_inclusive=False`` for spaCy-style exclusive ends.  The target tensor is
``(W, K, C)`` with ``K = max_width``: cell ``(w, k, c)`` is span ``w .. w + k``
(inclusive) with label ``labels[c]``; it is valid iff ``w + k < num_words``
(``span_mask``).  Gold spans wider than ``max_width`` cannot be represented: they
are counted in ``too_wide`` and, with ``on_too_wide="warn"`` (default), a warning is
issued; ``"raise"`` raises ``ValueError``; ``"ignore"`` only counts.  Spans cut by
``max_len`` truncation (``truncated``), with invalid coordinates (``invalid``) or
with a label that is not prompted (``unprompted``) are counted too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = [
    "SpanTargets",
    "BatchSpanTargets",
    "span_targets",
    "batch_span_targets",
    "token_target_indices",
]

Span = Tuple[int, int, str]


@dataclass
class SpanTargets:
    """0/1 span targets of one example as a sparse ``(W, K, C)`` spec.

    ``positives`` holds ``(w, k, c)`` cells set to 1: span ``w .. w + k`` (inclusive)
    has label ``c``.  ``num_words`` is the sentence length after ``max_len``
    truncation.  Counters list the gold spans that could not be represented.
    """

    num_words: int
    max_width: int
    num_labels: int
    positives: List[Tuple[int, int, int]] = field(default_factory=list)
    too_wide: List[Span] = field(default_factory=list)
    truncated: List[Span] = field(default_factory=list)
    invalid: List[Span] = field(default_factory=list)
    unprompted: List[Span] = field(default_factory=list)

    @property
    def shape(self) -> Tuple[int, int, int]:
        return (self.num_words, self.max_width, self.num_labels)

    def flat_indices(self) -> List[int]:
        """Indices into the flattened ``(W * K * C)`` tensor (row-major)."""
        K, C = self.max_width, self.num_labels
        return [(w * K + k) * C + c for w, k, c in self.positives]

    def span_mask(self):
        """``(W, K)`` boolean numpy array: ``w + k < num_words``."""
        import numpy as np

        w = np.arange(self.num_words)[:, None]
        k = np.arange(self.max_width)[None, :]
        return (w + k) < self.num_words

    def dense(self):
        """``(W, K, C)`` float32 numpy array (for tests and small batches)."""
        import numpy as np

        out = np.zeros(self.shape, dtype=np.float32)
        for w, k, c in self.positives:
            out[w, k, c] = 1.0
        return out


def _classify_span(
    span: Sequence, n_orig: int, n_words: int, max_width: int, end_inclusive: bool
) -> Tuple[str, Tuple[int, int, str]]:
    start, end, label = int(span[0]), int(span[1]), str(span[2])
    last = end if end_inclusive else end - 1
    norm = (start, last, label)
    if start < 0 or last < start or last >= n_orig:
        return "invalid", norm
    if last >= n_words:
        return "truncated", norm
    if last - start + 1 > max_width:
        return "too_wide", norm
    return "ok", norm


def span_targets(
    spans: Iterable[Sequence],
    labels: Sequence[str],
    num_words: int,
    max_width: int = 12,
    *,
    end_inclusive: bool = True,
    max_len: Optional[int] = None,
    on_too_wide: str = "warn",
) -> SpanTargets:
    """Sparse ``(W, K, C)`` targets of one example.

    Args:
        spans: gold ``(start, end, label)`` word spans.
        labels: the prompt labels of this example (their order defines ``c``).
        num_words: sentence length in words.
        max_width: ``K``, the widest span the model scores.
        end_inclusive: whether ``end`` is the last word (GLiNER) or one past it (spaCy).
        max_len: truncate the sentence to this many words first (reference ``max_len``).
        on_too_wide: ``"warn"``, ``"raise"`` or ``"ignore"`` (always counted).

    Spans wider than ``max_width`` are listed in ``too_wide`` (normalised to
    inclusive ends), never silently dropped.
    """
    if max_width < 1:
        raise ValueError("max_width must be >= 1")
    if on_too_wide not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_too_wide must be 'warn', 'raise' or 'ignore', got {on_too_wide!r}")
    n_words = min(num_words, max_len) if max_len is not None else num_words
    index = {label: c for c, label in enumerate(labels)}
    out = SpanTargets(num_words=n_words, max_width=max_width, num_labels=len(labels))
    seen = set()
    for span in spans:
        kind, (s, e, label) = _classify_span(span, num_words, n_words, max_width, end_inclusive)
        if kind != "ok":
            getattr(out, kind).append((s, e, label))
            continue
        if label not in index:
            out.unprompted.append((s, e, label))
            continue
        cell = (s, e - s, index[label])
        if cell not in seen:
            seen.add(cell)
            out.positives.append(cell)
    if out.too_wide:
        _report_too_wide(len(out.too_wide), max_width, on_too_wide)
    return out


def _report_too_wide(n: int, max_width: int, on_too_wide: str) -> None:
    msg = f"{n} gold span(s) wider than max_width={max_width} words cannot be targeted"
    if on_too_wide == "raise":
        raise ValueError(msg)
    if on_too_wide == "warn":
        warnings.warn(msg, stacklevel=3)


@dataclass
class BatchSpanTargets:
    """Span targets of a batch, padded to ``(B, W, K, C)``.

    ``index`` is four parallel lists ``(b, w, k, c)`` of the cells set to 1, ready
    for ``target[b, w, k, c] = 1`` (e.g. ``index_put_``).  ``lengths`` are the word
    counts after truncation; ``examples`` the per-example :class:`SpanTargets`.
    """

    shape: Tuple[int, int, int, int]
    index: Tuple[List[int], List[int], List[int], List[int]]
    lengths: List[int]
    examples: List[SpanTargets]

    @property
    def counts(self) -> Dict[str, int]:
        """Totals: ``positives``, ``too_wide``, ``truncated``, ``invalid``, ``unprompted``."""
        keys = ("positives", "too_wide", "truncated", "invalid", "unprompted")
        return {k: sum(len(getattr(ex, k)) for ex in self.examples) for k in keys}

    def span_mask(self):
        """``(B, W, K)`` boolean numpy array."""
        import numpy as np

        B, W, K, _ = self.shape
        w = np.arange(W)[None, :, None]
        k = np.arange(K)[None, None, :]
        n = np.asarray(self.lengths, dtype=np.int64).reshape(B, 1, 1)
        return (w + k) < n

    def dense(self):
        import numpy as np

        out = np.zeros(self.shape, dtype=np.float32)
        if self.index[0]:
            out[tuple(np.asarray(ix) for ix in self.index)] = 1.0
        return out


def batch_span_targets(
    spans: Sequence[Iterable[Sequence]],
    labels: Sequence[Sequence[str]],
    num_words: Sequence[int],
    max_width: int = 12,
    *,
    end_inclusive: bool = True,
    max_len: Optional[int] = None,
    on_too_wide: str = "warn",
) -> BatchSpanTargets:
    """:func:`span_targets` for a batch; one warning summarises the whole batch."""
    if not (len(spans) == len(labels) == len(num_words)):
        raise ValueError("spans, labels and num_words must have one entry per example")
    quiet = "ignore" if on_too_wide == "warn" else on_too_wide
    examples = [
        span_targets(sp, lb, n, max_width, end_inclusive=end_inclusive, max_len=max_len, on_too_wide=quiet)
        for sp, lb, n in zip(spans, labels, num_words)
    ]
    n_wide = sum(len(ex.too_wide) for ex in examples)
    if n_wide and on_too_wide == "warn":
        _report_too_wide(n_wide, max_width, "warn")
    B = len(examples)
    W = max((ex.num_words for ex in examples), default=0)
    C = max((ex.num_labels for ex in examples), default=0)
    bi: List[int] = []
    wi: List[int] = []
    ki: List[int] = []
    ci: List[int] = []
    for b, ex in enumerate(examples):
        for w, k, c in ex.positives:
            bi.append(b)
            wi.append(w)
            ki.append(k)
            ci.append(c)
    return BatchSpanTargets(
        shape=(B, W, max_width, C),
        index=(bi, wi, ki, ci),
        lengths=[ex.num_words for ex in examples],
        examples=examples,
    )


def token_target_indices(
    spans: Iterable[Sequence],
    labels: Sequence[str],
    num_words: int,
    *,
    end_inclusive: bool = True,
) -> List[Tuple[int, int, int]]:
    """``(w, c, channel)`` cells of the ``(W, C, 3)`` token-model target.

    Channel 0 marks the first word, 1 the last word, 2 every word of the span (as the
    reference ``UniEncoderTokenProcessor.create_labels``).  Spans with an unprompted
    label or outside the sentence are skipped (the reference skips them too).
    """
    index = {label: c for c, label in enumerate(labels)}
    cells = set()
    for span in spans:
        start, end, label = int(span[0]), int(span[1]), str(span[2])
        last = end if end_inclusive else end - 1
        if label not in index or start < 0 or last < start or last >= num_words:
            continue
        c = index[label]
        cells.add((start, c, 0))
        cells.add((last, c, 1))
        for w in range(start, last + 1):
            cells.add((w, c, 2))
    return sorted(cells)
