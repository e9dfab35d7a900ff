"""The span grid of a batch of windows: slot (i, k) is the span that starts at word i of its window
and is k + 1 words wide, for k < ``max_width``; span models score every slot, so decoding, label
retrieval and relation arguments all ask which slots are real and which words they cover."""
from __future__ import annotations

import torch


def spans_inside(lengths: torch.Tensor, words: int, widths: int) -> torch.Tensor:
    """(B, W, K) bool: span (start i, width k + 1) ends inside its window of ``lengths[b]`` words."""
    start = torch.arange(words).view(1, words, 1)
    width = torch.arange(1, widths + 1).view(1, 1, widths)
    return (start + width) <= lengths.cpu().view(-1, 1, 1)


def span_index(batch_size: int, num_words: int, max_width: int, device) -> torch.Tensor:
    """(B, W*K, 2) word (start, end inclusive) of every span slot, in flat order start*K + width."""
    starts = torch.arange(num_words, device=device).view(num_words, 1).expand(num_words, max_width)
    ends = starts + torch.arange(max_width, device=device).view(1, max_width)
    return torch.stack((starts, ends), dim=-1).reshape(1, num_words * max_width, 2).expand(batch_size, -1, -1)
