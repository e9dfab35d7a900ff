"""Scoring heads: span markers (span models) and the token scorer (token-level models)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Dropout, feed_forward


# Span head with a word mask: the per-width slices may compute at most this many times the valid
# spans (the rest end in padding) before gathering only the valid ones is cheaper.
SLICED_SPAN_HEAD_EXCESS = 1.5


class SpanMarkerHead(nn.Module):
    """Vector for every span (start word, width) from its projected endpoints.

    ``markerV0`` uses 4x feed-forward projections and a feed-forward output layer; ``marker``
    uses 2x projections and a linear output layer. The two differ only in sizes, so one class.
    """

    def __init__(self, hidden_size: int, max_width: int, dropout: float, mode: str):
        super().__init__()
        self.max_width = max_width
        expansion = 4 if mode == "markerV0" else 2
        self.project_start = feed_forward(hidden_size, hidden_size, hidden_size * expansion, dropout)
        self.project_end = feed_forward(hidden_size, hidden_size, hidden_size * expansion, dropout)
        if mode == "markerV0":
            self.out_project = feed_forward(hidden_size * 2, hidden_size, hidden_size * 4, dropout)
        else:
            self.out_project = nn.Linear(hidden_size * 2, hidden_size)

    def forward(self, words: torch.Tensor, word_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, W, D) word vectors -> (B, W, K, D) span vectors; span (i, k) covers words i..i+k.

        The reference applies the output layer's first linear map to ``relu([start; end])`` for
        each of the W x K spans. That map splits into a start half and an end half, so both halves
        are applied once per *word* and added per span: the same function with K times fewer
        multiplications in the largest layer.

        With ``word_mask`` (B, W), the rest of the output layer runs only where spans can end
        inside their sentence; spans past a sentence's last word (which no decoder or loss reads)
        come out as zeros. Without it, every span is computed, past-the-end ones reading a zero end
        vector.
        """
        return self._grid(words, word_mask, None)

    def folds_labels(self, num_labels: int) -> bool:
        """Whether :meth:`logits` folds the output layer into ``num_labels`` labels: cheaper than
        span vectors while there are no more labels than span-vector dimensions."""
        return num_labels <= self.span_width

    @property
    def span_width(self) -> int:
        last = self.out_project[-1] if isinstance(self.out_project, nn.Sequential) else self.out_project
        return last.out_features

    def logits(self, words: torch.Tensor, labels: torch.Tensor, word_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, W, D) words, (B, C, D) labels -> (B, W, K, C): ``einsum("bwkd,bcd->bwkc", self(words,
        word_mask), labels)``, without making the span vectors when there are few labels.

        A logit is a label's dot product with the span vector, whose last step is a linear map:
        the map is moved onto the labels (C vectors as wide as the map's input, once per batch),
        so the W x K spans are multiplied by C columns instead of by the D x 4D output matrix. The
        same function up to float rounding."""
        if not self.folds_labels(labels.size(1)):
            return torch.einsum("bwkd,bcd->bwkc", self(words, word_mask), labels)
        return self._grid(words, word_mask, labels)

    def _grid(self, words, word_mask, labels) -> torch.Tensor:
        """Span vectors (``labels`` None) or their logits against ``labels`` (B, C, D), on the
        (B, W, K) grid of spans."""
        dim = words.size(-1)
        start = self.project_start(words).relu()
        end = self.project_end(words).relu()
        first = self.out_project[0] if isinstance(self.out_project, nn.Sequential) else self.out_project
        start_part = F.linear(start, first.weight[:, :dim], first.bias)
        end_part = F.linear(end, first.weight[:, dim:])
        if not isinstance(self.out_project, nn.Sequential):  # linear all the way: each half meets the labels alone
            if labels is not None:
                start_part, end_part = (torch.einsum("bwd,bcd->bwc", part, labels) for part in (start_part, end_part))
            return start_part.unsqueeze(2) + _by_width(end_part, self.max_width)
        rest = list(self.out_project)[1:]
        if labels is not None:
            last = rest.pop()
            folded = labels @ last.weight  # (B, C, 4D): each label through the last map, transposed
            offset = labels @ last.bias  # (B, C)
            rest.append(lambda hidden: torch.einsum("b...h,bch->b...c", hidden, folded) + offset.view(
                offset.size(0), *([1] * (hidden.dim() - 2)), -1))
        if word_mask is None:
            spans = start_part.unsqueeze(2) + _by_width(end_part, self.max_width)
            for layer in rest:
                spans = layer(spans)
            return spans
        valid = _by_width(word_mask.to(start_part.dtype).unsqueeze(-1), self.max_width).squeeze(-1) > 0  # (B, W, K)
        batch, num_words = words.shape[:2]
        widths = min(self.max_width, num_words)
        # One width at a time, all starts of the batch: starts and ends are then two contiguous
        # slices, which costs far less than gathering each valid span's rows; it also computes
        # spans that end in a shorter sentence's padding, so when those would be many (a batch of
        # very unequal lengths; the window batches are sorted by length, so rarely) only the valid
        # spans are gathered instead.
        sliced = batch * (widths * num_words - widths * (widths - 1) // 2)
        if sliced > SLICED_SPAN_HEAD_EXCESS * int(valid.sum()):
            spans = self._valid_spans_only(start_part, end_part, list(self.out_project)[1:], valid)
            return spans if labels is None else torch.einsum("bwkd,bcd->bwkc", spans, labels)
        out = start_part.new_zeros(*valid.shape, self.span_width if labels is None else labels.size(1))
        for width in range(widths):
            pairs = start_part[:, : num_words - width] + end_part[:, width:]
            for layer in rest:
                pairs = layer(pairs)
            out[:, : num_words - width, width] = pairs
        return out.masked_fill_(~valid.unsqueeze(-1), 0.0)

    @staticmethod
    def _valid_spans_only(start_part, end_part, rest, valid) -> torch.Tensor:
        """The output layer on the valid spans' rows only, scattered into a (B, W, K, D) zero grid."""
        batch_idx, start_idx, width_idx = valid.nonzero(as_tuple=True)
        packed = start_part[batch_idx, start_idx] + end_part[batch_idx, start_idx + width_idx]
        for layer in rest:
            packed = layer(packed)
        spans = packed.new_zeros(*valid.shape, packed.size(-1))
        spans[batch_idx, start_idx, width_idx] = packed
        return spans

    def spans_at(self, words: torch.Tensor, span_idx: torch.Tensor) -> torch.Tensor:
        """(B, W, D) word vectors, (B, E, 2) word (start, end inclusive) -> (B, E, D) span vectors.

        The reference's ``TokenMarker`` (token-level relex models): the same projections as
        ``markerV0`` applied to arbitrary spans, of any width, instead of the (start, width) grid.
        The output layer runs on the concatenation as in the reference (no split), so the vectors
        of a given span are the reference's bit for bit on CPU.
        """
        dim = words.size(-1)
        start = self.project_start(words)
        end = self.project_end(words)
        starts = span_idx[..., 0].unsqueeze(-1).expand(-1, -1, dim)
        ends = span_idx[..., 1].unsqueeze(-1).expand(-1, -1, dim)
        pair = torch.cat([start.gather(1, starts), end.gather(1, ends)], dim=-1).relu()
        return self.out_project(pair)


def _by_width(per_word: torch.Tensor, max_width: int) -> torch.Tensor:
    """(B, W, X) -> (B, W, K, X): for each start i, the rows of words i..i+K-1 (zeros past the end)."""
    padded = F.pad(per_word, (0, 0, 0, max_width - 1))
    # unfold gives (B, W, X, K)
    return padded.unfold(1, max_width, 1).permute(0, 1, 3, 2)


class TokenScorer(nn.Module):
    """Per word and label: start, end and inside logits (token-level GLiNER)."""

    def __init__(self, hidden_size: int, dropout: float):
        super().__init__()
        self.proj_token = nn.Linear(hidden_size, hidden_size * 2)
        self.proj_label = nn.Linear(hidden_size, hidden_size * 2)
        self.out_mlp = nn.Sequential(
            nn.Linear(hidden_size * 3, hidden_size * 4), Dropout(dropout), nn.ReLU(), nn.Linear(hidden_size * 4, 3)
        )

    def forward(self, words: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, W, D) words and (B, C, D) labels -> (B, W, C, 3) logits."""
        batch, num_words, dim = words.shape
        num_labels = labels.size(1)
        word_a, word_b = self.proj_token(words).view(batch, num_words, 1, 2, dim).unbind(3)
        label_a, label_b = self.proj_label(labels).view(batch, 1, num_labels, 2, dim).unbind(3)
        features = torch.cat(
            [
                word_a.expand(-1, -1, num_labels, -1),
                label_a.expand(-1, num_words, -1, -1),
                word_b * label_b,
            ],
            dim=-1,
        )
        return self.out_mlp(features)
