"""Splitting long documents into overlapping windows that fit the model, and who owns which span.

A window is limited both by the model's word limit (``max_len``) and by the encoder's subword
limit. Consecutive windows overlap; the overlap is cut in the middle and each window reports only
spans that *start* in its own part. With an overlap of at least twice the maximum span width,
every span lies wholly inside the window that owns it, so border entities are found exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence


@dataclass(frozen=True)
class Window:
    doc_index: int
    start: int  # first word, in document word offsets
    end: int  # one past the last word
    own_start: int  # spans starting in [own_start, own_end) are reported by this window
    own_end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_windows(
    doc_index: int, piece_counts: Sequence[int], max_words: int, max_pieces: int, overlap: int
) -> List[Window]:
    """Windows covering every word; ``piece_counts[i]`` is the subword count of word i."""
    if max_words < 1 or max_pieces < 1:
        raise ValueError(f"window limits must be positive (max_words={max_words}, max_pieces={max_pieces})")
    total = len(piece_counts)
    bounds = []
    start = 0
    while start < total:
        end, used = start, 0
        while end < total and end - start < max_words and used + piece_counts[end] <= max_pieces:
            used += piece_counts[end]
            end += 1
        if end == start:
            raise ValueError(
                f"word {start} has {piece_counts[start]} subwords, more than the {max_pieces} that fit "
                "beside the label prompt; use fewer labels per group or a larger encoder window."
            )
        bounds.append((start, end))
        if end == total:
            break
        start = max(end - overlap, start + 1)
    windows = []
    for i, (start, end) in enumerate(bounds):
        own_start = 0 if i == 0 else (bounds[i - 1][1] + start) // 2
        own_end = total if i == len(bounds) - 1 else (end + bounds[i + 1][0]) // 2
        windows.append(Window(doc_index, start, end, own_start, own_end))
    return windows
