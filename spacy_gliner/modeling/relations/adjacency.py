"""Adjacency scorers of relex models (config ``relations_layer``): entity vectors (B, E, D) and
their mask (B, E) -> (B, E, E) probabilities that a pair is related, which decide the candidate
pairs the relation head classifies."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# ``relations_layer`` values understood by the reference (it lower-cases the
# value first).  ``"none"`` (exact, lower-case) means "no adjacency layer: score
# every entity pair".
SUPPORTED_RELATIONS_LAYERS: Tuple[str, ...] = ("dot", "mlp", "attention", "attn", "bilinear", "gcn", "gat", "none")




def _mask_pairs(adjacency: torch.Tensor, entity_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Zero every (i, j) entry whose i or j is a padded entity."""
    if entity_mask is None:
        return adjacency
    m = entity_mask.float()
    return adjacency * m.unsqueeze(2) * m.unsqueeze(1)


def _self_similarity(x: torch.Tensor) -> torch.Tensor:
    """``sigmoid(x @ x^T)`` over the entity axis: (B, E, D) -> (B, E, E)."""
    return torch.sigmoid(torch.bmm(x, x.transpose(1, 2)))


def _attention_weights(
    attention: nn.MultiheadAttention, x: torch.Tensor, entity_mask: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Self-attention over entities; returns (outputs, head-averaged weights).

    With no entity at all (E == 0) torch returns no weights and the reference
    crashes (AttributeError); we return empty tensors instead.
    """
    if x.size(1) == 0:
        B = x.size(0)
        return x, x.new_zeros(B, 0, 0)
    padding = (~entity_mask.bool()) if entity_mask is not None else None
    outputs, weights = attention(x, x, x, key_padding_mask=padding, need_weights=True)
    if weights.dim() == 4:
        weights = weights.mean(dim=1)
    return outputs, weights


# ---------------------------------------------------------------------------
# adjacency scorers: forward(entities (B, E, D), entity_mask (B, E)) -> (B, E, E)
# ---------------------------------------------------------------------------


class DotAdjacency(nn.Module):
    """``sigmoid(<e_i, e_j>)`` - no parameters (``relations_layer="dot"``)."""

    def forward(self, entities: torch.Tensor, entity_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return _mask_pairs(_self_similarity(entities), entity_mask)


class PairMLPAdjacency(nn.Module):
    """``sigmoid(MLP([e_i; e_j]))`` (``relations_layer="mlp"``)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.pair_mlp = nn.Sequential(nn.Linear(2 * dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))

    def forward(self, entities: torch.Tensor, entity_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.score_rows(entities, entity_mask, 0, entities.size(1))

    def score_rows(
        self, entities: torch.Tensor, entity_mask: Optional[torch.Tensor], start: int, stop: int
    ) -> torch.Tensor:
        """Rows ``start:stop`` of the adjacency, (B, stop - start, E). The whole matrix needs an
        (E, E, 2D) input; a block of rows needs (rows, E, 2D), which is how inference bounds it."""
        B, E, D = entities.shape
        rows = stop - start
        heads = entities[:, start:stop].unsqueeze(2).expand(B, rows, E, D)
        tails = entities.unsqueeze(1).expand(B, rows, E, D)
        probs = torch.sigmoid(self.pair_mlp(torch.cat([heads, tails], dim=-1)).squeeze(-1))
        if entity_mask is None:
            return probs
        m = entity_mask.float()
        return probs * m[:, start:stop].unsqueeze(2) * m.unsqueeze(1)


class AttentionWeightAdjacency(nn.Module):
    """Head-averaged self-attention weights (``relations_layer="attention"|"attn"``).

    Rows sum to 1 over the valid entities, so values are ~1/E - adjacency
    thresholds that suit the sigmoid scorers are usually far too high here.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.self_attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, entities: torch.Tensor, entity_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        _, weights = _attention_weights(self.self_attention, entities, entity_mask)
        return _mask_pairs(weights, entity_mask)


class BilinearAdjacency(nn.Module):
    """``sigmoid(z_i . z_j)`` with ``z = W e + b`` (``relations_layer="bilinear"``)."""

    def __init__(self, dim: int, latent_dim: int):
        super().__init__()
        self.latent_projection = nn.Linear(dim, latent_dim)

    def forward(self, entities: torch.Tensor, entity_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return _mask_pairs(_self_similarity(self.latent_projection(entities)), entity_mask)


class GraphConvAdjacency(nn.Module):
    """One GCN step over the dot adjacency, then a bilinear read-out (``"gcn"``).

    ``A0 = mask(sigmoid(E E^T))``; ``A1 = A0 + diag(mask)``;
    ``H = relu(graph_conv(D^-1/2 A1 D^-1/2 E))`` with ``D = rowsum(A1)`` clamped
    at 1e-6; ``Z = latent_projection(H)``; output ``mask(sigmoid(Z Z^T))``.
    """

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.graph_conv = nn.Linear(dim, hidden_dim)
        self.latent_projection = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, entities: torch.Tensor, entity_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        initial = _mask_pairs(_self_similarity(entities), entity_mask)
        if entity_mask is not None:
            with_loops = _mask_pairs(initial, entity_mask) + torch.diag_embed(entity_mask.float())
        else:
            eye = torch.eye(initial.size(1), device=initial.device)
            with_loops = initial + eye.unsqueeze(0)
        inv_sqrt_degree = torch.diag_embed(with_loops.sum(dim=-1).clamp(min=1e-6).pow(-0.5))
        normalized = inv_sqrt_degree @ with_loops @ inv_sqrt_degree
        hidden = F.relu(self.graph_conv(torch.bmm(normalized, entities)))
        return _mask_pairs(_self_similarity(self.latent_projection(hidden)), entity_mask)


class GraphAttentionAdjacency(nn.Module):
    """Self-attention update, then a bilinear read-out (``relations_layer="gat"``)."""

    def __init__(self, dim: int, num_heads: int, hidden_dim: int):
        super().__init__()
        self.self_attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.latent_projection = nn.Linear(dim, hidden_dim)

    def forward(self, entities: torch.Tensor, entity_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        updated, _ = _attention_weights(self.self_attention, entities, entity_mask)
        return _mask_pairs(_self_similarity(self.latent_projection(updated)), entity_mask)


def build_adjacency_scorer(relations_layer: str, dim: int, **options: Any) -> nn.Module:
    """Adjacency scorer for a ``relations_layer`` value (other than ``"none"``).

    ``options`` mirror the reference's optional kwargs (``hidden_dim``,
    ``num_heads`` (reference: ``nhead``), ``latent_dim``); a GLiNER model never
    passes any, so the defaults (``dim``, 8 heads) are what checkpoints use.
    """
    mode = str(relations_layer).lower()
    hidden_dim = options.get("hidden_dim", dim)
    num_heads = options.get("num_heads", options.get("nhead", 8))
    if mode == "dot":
        return DotAdjacency()
    if mode == "mlp":
        return PairMLPAdjacency(dim, hidden_dim)
    if mode in ("attention", "attn"):
        return AttentionWeightAdjacency(dim, num_heads)
    if mode == "bilinear":
        return BilinearAdjacency(dim, options.get("latent_dim", dim))
    if mode == "gcn":
        return GraphConvAdjacency(dim, hidden_dim)
    if mode == "gat":
        return GraphAttentionAdjacency(dim, num_heads, hidden_dim)
    raise ValueError(
        f"Unsupported relations_layer {relations_layer!r}; supported values: "
        f"{', '.join(SUPPORTED_RELATIONS_LAYERS)} (or None for a non-relex model)"
    )
