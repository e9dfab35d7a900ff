"""Small building blocks shared by the heads."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on CPU.

    PyTorch's CPU dropout draws its mask through a Bernoulli sampler that takes about 2.5x the
    time of drawing uniforms and comparing; on the span head's (spans x 4H) activations that was
    a sixth of a CPU training step. Same distribution and scaling; other devices keep the fused
    kernel. Holds no weights, so checkpoints are unaffected.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        if self.p == 1:
            return x * 0
        keep = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


def feed_forward(in_dim: int, out_dim: int, hidden_dim: int, dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> Linear.

    Kept as an ``nn.Sequential`` with this exact layout because checkpoint weights are
    addressed by position (``.0.`` and ``.3.``).
    """
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(), Dropout(dropout), nn.Linear(hidden_dim, out_dim)
    )


class WordLSTM(nn.Module):
    """Bidirectional LSTM over word vectors; padding positions come out as zeros."""

    def __init__(self, hidden_size: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(
            input_size=hidden_size,
            hidden_size=hidden_size // 2,
            num_layers=num_layers,
            bidirectional=True,
            batch_first=True,
        )

    def forward(self, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        lengths = word_mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(words, lengths, batch_first=True, enforce_sorted=False)
        output, _ = self.lstm(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=words.size(1))
        return output
