"""Post-fusion layers: attention between label vectors and word vectors before scoring.

A checkpoint whose ``gliner_config.json`` sets ``post_fusion_schema`` (e.g. ``"l2l-l2t-t2t"``)
holds ``num_post_fusion_layers`` layers, each a sequence of attention steps named by the schema:

* ``l2l`` - labels attend to labels (self-attention),
* ``t2t`` - words attend to words (self-attention),
* ``l2t`` - labels attend to words (cross-attention; the labels are updated),
* ``t2l`` - words attend to labels (cross-attention; the words are updated).

Where it applies, as in the reference gliner 0.2.29: bi-encoder models (span and token) fuse the
label encoder's vectors with the window's word vectors right after word pooling, before the span
head and the label projection. Uni-encoder models hold the weights but the reference never calls
them, so neither do we (see ``GlinerModel.applies_post_fusion``).

The arithmetic follows the reference's blocks so that scores match to float precision:

* self-attention step: ``x = LN_pre(x)``; ``LN_post(x + attend(q_proj(x), k_proj(x), v_proj(x)))``
* cross-attention step: ``q = LN_pre(query)``; ``LN_post(q + attend(q, key, v_proj(key)))``
  (the key side is not normalised, and only the values get an extra projection)
* ``attend`` projects again (``query_layer``/``key_layer``/``value_layer``), splits into heads
  and runs scaled dot-product attention with a boolean mask: a position attends only to valid
  positions (padding words, padded labels are never keys). Rows with no valid key (padding
  queries) come out as zeros.

Parameter names are the reference checkpoint's (below ``cross_fuser.``, mapped to
``post_fusion.`` in :mod:`.checkpoint`), so checkpoints load strictly and save back unchanged.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Dropout

SELF_STEPS = ("l2l", "t2t")
CROSS_STEPS = ("l2t", "t2l")


def parse_schema(schema: str) -> Tuple[str, ...]:
    return tuple(schema.split("-"))


def check_fusion_schema(schema: str, num_layers: int, hidden_size: int) -> None:
    """Raise ValueError, naming the problem, for a schema or size the layers cannot be built with."""
    steps = parse_schema(schema)
    unknown = [step for step in steps if step not in SELF_STEPS + CROSS_STEPS]
    if unknown:
        raise ValueError(
            f"post_fusion_schema {schema!r} has unknown steps {unknown}; steps are "
            f"{', '.join(SELF_STEPS + CROSS_STEPS)} joined by '-' (e.g. 'l2l-l2t-t2t')."
        )
    if num_layers < 0:
        raise ValueError(f"num_post_fusion_layers must be >= 0, got {num_layers}.")
    if hidden_size <= 0:
        raise ValueError(f"hidden_size must be positive, got {hidden_size}.")


class _MultiHeadAttention(nn.Module):
    """Projections, head split and masked scaled dot-product attention (no output projection)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        if dim % num_heads:
            # the reference builds such a model but its attention cannot split the vectors into
            # heads, so it fails on the first input
            raise ValueError(
                f"post-fusion layers: hidden_size {dim} is not divisible by the text encoder's {num_heads} "
                "attention heads; this checkpoint cannot run in the reference gliner package either."
            )
        self.num_heads = num_heads
        self.dropout = dropout
        self.query_layer = nn.Linear(dim, dim)
        self.key_layer = nn.Linear(dim, dim)
        self.value_layer = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, Q, D) queries, (B, K, D) keys and values, (B, Q, K) bool mask -> (B, Q, D)."""
        out = F.scaled_dot_product_attention(
            self._heads(self.query_layer(queries)),
            self._heads(self.key_layer(keys)),
            self._heads(self.value_layer(values)),
            attn_mask=None if mask is None else mask.unsqueeze(1),
            dropout_p=self.dropout if self.training else 0.0,
        )
        batch, _, length, _ = out.shape
        return out.transpose(1, 2).reshape(batch, length, -1)


class SelfAttentionStep(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.self_attn = _MultiHeadAttention(dim, num_heads, dropout)
        self.pre_norm = nn.LayerNorm(dim)
        self.post_norm = nn.LayerNorm(dim)
        self.dropout = Dropout(dropout)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.pre_norm(x)
        attended = self.self_attn(self.q_proj(x), self.k_proj(x), self.v_proj(x), mask)
        return self.post_norm(x + self.dropout(attended))


class CrossAttentionStep(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.cross_attn = _MultiHeadAttention(dim, num_heads, dropout)
        self.pre_norm = nn.LayerNorm(dim)
        self.post_norm = nn.LayerNorm(dim)
        self.dropout = Dropout(dropout)
        self.v_proj = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        queries = self.pre_norm(queries)
        attended = self.cross_attn(queries, keys, self.v_proj(keys), mask)
        return self.post_norm(queries + self.dropout(attended))


class PostFusion(nn.Module):
    """``num_layers`` x the schema's steps, updating label and word vectors in turn."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, dropout: float, schema: str):
        super().__init__()
        check_fusion_schema(schema, num_layers, dim)
        self.steps = parse_schema(schema)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                SelfAttentionStep(dim, num_heads, dropout) if step in SELF_STEPS else CrossAttentionStep(dim, num_heads, dropout)
                for step in self.steps
            )
            for _ in range(num_layers)
        )

    def forward(
        self, labels: torch.Tensor, words: torch.Tensor, label_mask: torch.Tensor, word_mask: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, C, D) labels, (B, W, D) words and their (B, C), (B, W) masks -> fused (labels, words)."""
        label_mask, word_mask = label_mask.bool(), word_mask.bool()
        masks = {
            "l2l": label_mask.unsqueeze(2) & label_mask.unsqueeze(1),  # (B, C, C)
            "t2t": word_mask.unsqueeze(2) & word_mask.unsqueeze(1),  # (B, W, W)
            "l2t": label_mask.unsqueeze(2) & word_mask.unsqueeze(1),  # (B, C, W)
            "t2l": word_mask.unsqueeze(2) & label_mask.unsqueeze(1),  # (B, W, C)
        }
        for layer in self.layers:
            for step, block in zip(self.steps, layer):
                if step == "l2l":
                    labels = block(labels, masks[step])
                elif step == "t2t":
                    words = block(words, masks[step])
                elif step == "l2t":
                    labels = block(labels, words, masks[step])
                else:
                    words = block(words, labels, masks[step])
        return labels, words
