"""Relation-extraction heads for GLiNER "relex" checkpoints (torch only).

This module holds the part of a GLiNER span relex model
(``UniEncoderSpanRelexModel`` in the reference ``gliner`` package) that sits on
top of the shared span model:

1. **Entity selection** - spans whose best entity-class probability
   ``max_c sigmoid(span_logits)`` is ``> threshold`` (and whose span mask is
   set) are packed, in flat span order ``start * K + width``, into an entity
   list ``(B, E, D)``.
2. **Adjacency** - an optional adjacency scorer (config ``relations_layer``)
   maps the entity list to ``(B, E, E)`` probabilities.
3. **Pairing** - directed pairs ``(head, tail)``, ``head != tail``, are taken
   where ``adjacency > adjacency_threshold`` (or every pair when
   ``relations_layer == "none"``), row-major.
4. **Relation scoring** - either a pair projection (concatenate head and tail,
   2-layer MLP, dot product with each relation prompt) or a knowledge-graph
   triple scorer (config ``triples_layer``) gives ``(B, N, R)`` logits.

Nothing here depends on spaCy or on the ``gliner`` package; parameter names are
our own, and :data:`REFERENCE_KEY_PREFIXES` maps the reference checkpoint's
state-dict names onto them.  See ``docs/relex_reference.md`` for the full spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import gather_prompt_vectors
from .layers import Dropout

__all__ = [
    "SUPPORTED_RELATIONS_LAYERS",
    "SUPPORTED_TRIPLES_LAYERS",
    "REFERENCE_TRIPLES_DIM",
    "REFERENCE_KEY_PREFIXES",
    "RelationHead",
    "RelationHeadOutput",
    "EntitySelection",
    "CandidatePairs",
    "build_relation_head",
    "build_adjacency_scorer",
    "build_triple_scorer",
    "rename_reference_key",
    "relation_state_dict_from_reference",
    "span_logits_from_prompts",
    "select_entities",
    "gather_entities",
    "candidate_pairs_from_adjacency",
    "all_candidate_pairs",
    "pairs_from_lists",
    "PAIRS_PER_CHUNK",
    "ADJACENCY_BLOCK_CELLS",
]

# Inference bounds (see RelationHead.candidate_pair_blocks / score_pair_chunk): pairs classified
# per call (each holds about 13 D floats through the pair projection: ~50 MB at D = 256), and
# adjacency cells scored per block (the mlp scorer holds about 4 D floats per cell).
PAIRS_PER_CHUNK = 4096
ADJACENCY_BLOCK_CELLS = 16_384

# ``relations_layer`` values understood by the reference (it lower-cases the
# value first).  ``"none"`` (exact, lower-case) means "no adjacency layer: score
# every entity pair".
SUPPORTED_RELATIONS_LAYERS: Tuple[str, ...] = ("dot", "mlp", "attention", "attn", "bilinear", "gcn", "gat", "none")

# ``triples_layer`` values (case-sensitive, as in the reference).  "ConvE" exists
# in the reference but cannot be built from a config (it needs ``emb_dim1``,
# which the model never passes), so it is not supported here either.
SUPPORTED_TRIPLES_LAYERS: Tuple[str, ...] = (
    "UM",
    "SE",
    "TransE",
    "TransH",
    "TransF",
    "PairRE",
    "TripleRE",
    "DistMult",
    "SimplE",
    "DistMA",
    "ComplEx",
    "QuatE",
    "HolE",
    "TuckER",
    "ERMLP",
    "ConvKB",
)

# The reference builds its triple scorer as ``TriplesScoreLayer(triples_layer)``
# without passing the hidden size, so every dimension-dependent parameter is
# sized for 768 whatever ``hidden_size`` is.  We mirror that so checkpoints load
# with identical shapes (a model whose hidden_size != 768 and whose triple mode
# has parameters cannot run in the reference either).
REFERENCE_TRIPLES_DIM = 768

_ADJ = "relations_rep_layer.relation_rep_layer."
_TRI = "triples_score_layer.interaction."

# Reference state-dict prefix (relative to the GLiNER model root, i.e. the keys
# of ``GLiNER.model.state_dict()`` / ``pytorch_model.bin`` with any leading
# ``model.`` stripped) -> name inside :class:`RelationHead`.  Prefixes are
# matched longest-first by :func:`rename_reference_key`.
REFERENCE_KEY_PREFIXES: Dict[str, str] = {
    # pair projection (used whenever triples_layer is None)
    "pair_rep_layer.": "pair_projection.",
    # relations_layer == "mlp"
    _ADJ + "mlp.": "adjacency_scorer.pair_mlp.",
    # relations_layer in {"attention", "attn"} and "gat"
    _ADJ + "attn.": "adjacency_scorer.self_attention.",
    # relations_layer == "bilinear" (proj), "gcn" (proj), "gat" (linear)
    _ADJ + "proj.": "adjacency_scorer.latent_projection.",
    _ADJ + "linear.": "adjacency_scorer.latent_projection.",
    # relations_layer == "gcn"
    _ADJ + "gcn.linear.": "adjacency_scorer.graph_conv.",
    # triples_layer (norm-based modes, TransH/TransF/PairRE/TripleRE)
    _TRI + "r_to_rtr.": "triple_scorer.translation_from_relation.",
    _TRI + "r_to_rvec.": "triple_scorer.translation_from_relation.",
    _TRI + "r_to_w.": "triple_scorer.normal_from_relation.",
    _TRI + "r_to_alpha.": "triple_scorer.head_scale_from_relation.",
    _TRI + "r_to_beta.": "triple_scorer.tail_scale_from_relation.",
    _TRI + "r_to_delta.": "triple_scorer.offset_from_relation.",
    _TRI + "r_to_gamma.": "triple_scorer.weight_from_relation.",
    _TRI + "scorer.": "triple_scorer.learned_distance.",
    # TuckER
    _TRI + "W": "triple_scorer.core_tensor",
    _TRI + "bn0.": "triple_scorer.head_norm.",
    _TRI + "bn1.": "triple_scorer.tail_norm.",
    # ERMLP
    _TRI + "mlp.": "triple_scorer.triple_mlp.",
    # ConvKB
    _TRI + "conv.": "triple_scorer.filters.",
    _TRI + "fc.": "triple_scorer.score_projection.",
}

_PREFIXES_LONGEST_FIRST = sorted(REFERENCE_KEY_PREFIXES, key=len, reverse=True)


def rename_reference_key(key: str) -> Optional[str]:
    """Map one reference state-dict key to our :class:`RelationHead` key.

    ``key`` may carry a leading ``"model."`` (as in GLiNER's saved
    ``pytorch_model.bin`` when saved from the wrapper).  Returns ``None`` when
    the key does not belong to the relation part.
    """
    if key.startswith("model.") and not key.startswith(tuple(REFERENCE_KEY_PREFIXES)):
        key = key[len("model.") :]
    for prefix in _PREFIXES_LONGEST_FIRST:
        if key.startswith(prefix):
            return REFERENCE_KEY_PREFIXES[prefix] + key[len(prefix) :]
    return None


def relation_state_dict_from_reference(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Pick the relation-part tensors out of a full reference state dict, renamed."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new_key = rename_reference_key(key)
        if new_key is not None:
            out[new_key] = value
    return out


# ---------------------------------------------------------------------------
# small tensor helpers
# ---------------------------------------------------------------------------


def _mask_pairs(adjacency: torch.Tensor, entity_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Zero every (i, j) entry whose i or j is a padded entity."""
    if entity_mask is None:
        return adjacency
    m = entity_mask.float()
    return adjacency * m.unsqueeze(2) * m.unsqueeze(1)


def _self_similarity(x: torch.Tensor) -> torch.Tensor:
    """``sigmoid(x @ x^T)`` over the entity axis: (B, E, D) -> (B, E, E)."""
    return torch.sigmoid(torch.bmm(x, x.transpose(1, 2)))


def _two_layer_projection(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Linear(in, 4*out) -> ReLU -> Dropout -> Linear(4*out, out).

    Same layout (and therefore the same ``0.`` / ``3.`` parameter indices) as the
    reference's projection layers.
    """
    return nn.Sequential(
        nn.Linear(in_dim, out_dim * 4),
        nn.ReLU(),
        Dropout(dropout),
        nn.Linear(out_dim * 4, out_dim),
    )


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


# ---------------------------------------------------------------------------
# triple scorers: forward(head, relation, tail) each (..., D) -> (...)
# ---------------------------------------------------------------------------


class _DistanceScore(nn.Module):
    """Base for translational modes: score = -min(||residual||_p ** power, clamp)."""

    def __init__(self, p: float = 2, power: float = 1.0, clamp: Optional[float] = 10.0):
        super().__init__()
        self.p = p
        self.power = power
        self.clamp = clamp
        # The reference optionally learns a scorer MLP instead of the norm
        # (``use_scorer``); a GLiNER config can never enable it.
        self.learned_distance: Optional[nn.Module] = None

    def distance_score(self, residual: torch.Tensor) -> torch.Tensor:
        if self.learned_distance is not None:
            return self.learned_distance(residual).squeeze(-1)
        distance = torch.linalg.norm(residual, ord=self.p, dim=-1).pow(self.power)
        if self.clamp is not None:
            distance = distance.clamp(max=self.clamp)
        return -distance


class UnstructuredScore(_DistanceScore):
    """UM: ``-||h - t||_2``."""

    def forward(self, h, r, t):
        return self.distance_score(h - t)


class StructuredEmbeddingScore(_DistanceScore):
    """SE: ``-||diag(r) h - diag(r) t||_2``."""

    def forward(self, h, r, t):
        scale = torch.diag_embed(r)
        h_scaled = torch.matmul(scale, h.unsqueeze(-1)).squeeze(-1)
        t_scaled = torch.matmul(scale, t.unsqueeze(-1)).squeeze(-1)
        return self.distance_score(h_scaled - t_scaled)


class TranslationScore(_DistanceScore):
    """TransE: ``-||h + r - t||_1``."""

    def __init__(self):
        super().__init__(p=1)

    def forward(self, h, r, t):
        return self.distance_score(h + r - t)


class HyperplaneTranslationScore(_DistanceScore):
    """TransH: project h, t on the hyperplane with normal ``w(r)``, translate by ``d(r)``."""

    def __init__(self, dim: int):
        super().__init__(p=2)
        self.translation_from_relation = nn.Linear(dim, dim)
        self.normal_from_relation = nn.Linear(dim, dim)

    def forward(self, h, r, t):
        translation = self.translation_from_relation(r)
        normal = F.normalize(self.normal_from_relation(r), dim=-1)
        h_proj = h - (h * normal).sum(dim=-1, keepdim=True) * normal
        t_proj = t - (t * normal).sum(dim=-1, keepdim=True) * normal
        return self.distance_score(h_proj + translation - t_proj)


class ScaledTranslationScore(_DistanceScore):
    """TransF: ``-||alpha(r) * h + d(r) - beta(r) * t||_2``."""

    def __init__(self, dim: int):
        super().__init__(p=2)
        self.translation_from_relation = nn.Linear(dim, dim)
        self.head_scale_from_relation = nn.Linear(dim, dim)
        self.tail_scale_from_relation = nn.Linear(dim, dim)

    def forward(self, h, r, t):
        translation = self.translation_from_relation(r)
        head_scale = self.head_scale_from_relation(r)
        tail_scale = self.tail_scale_from_relation(r)
        return self.distance_score(head_scale * h + translation - tail_scale * t)


class PairedScalingScore(_DistanceScore):
    """PairRE: ``-||alpha(r) * h - beta(r) * t||_2``."""

    def __init__(self, dim: int):
        super().__init__(p=2)
        self.head_scale_from_relation = nn.Linear(dim, dim)
        self.tail_scale_from_relation = nn.Linear(dim, dim)

    def forward(self, h, r, t):
        head_scale = self.head_scale_from_relation(r)
        tail_scale = self.tail_scale_from_relation(r)
        return self.distance_score(head_scale * h - tail_scale * t)


class WeightedPairedScalingScore(_DistanceScore):
    """TripleRE: ``gamma(r) * -||alpha(r) * h + delta(r) - beta(r) * t||_2``."""

    def __init__(self, dim: int):
        super().__init__(p=2)
        self.head_scale_from_relation = nn.Linear(dim, dim)
        self.tail_scale_from_relation = nn.Linear(dim, dim)
        self.offset_from_relation = nn.Linear(dim, dim)
        self.weight_from_relation = nn.Linear(dim, 1)

    def forward(self, h, r, t):
        head_scale = self.head_scale_from_relation(r)
        tail_scale = self.tail_scale_from_relation(r)
        offset = self.offset_from_relation(r)
        weight = self.weight_from_relation(r).squeeze(-1)
        return weight * self.distance_score(head_scale * h + offset - tail_scale * t)


class TrilinearScore(nn.Module):
    """DistMult: ``sum(h * r * t)``."""

    def forward(self, h, r, t):
        return (h * r * t).sum(dim=-1)


class SplitTrilinearScore(nn.Module):
    """SimplE: halves (forward, backward); ``(<h_f, r_f, t_b> + <t_f, r_b, h_b>) / 2``."""

    def forward(self, h, r, t):
        h_fwd, h_bwd = torch.chunk(h, 2, dim=-1)
        r_fwd, r_bwd = torch.chunk(r, 2, dim=-1)
        t_fwd, t_bwd = torch.chunk(t, 2, dim=-1)
        return 0.5 * ((h_fwd * r_fwd * t_bwd).sum(dim=-1) + (t_fwd * r_bwd * h_bwd).sum(dim=-1))


class PairwiseDotScore(nn.Module):
    """DistMA: ``<h, r> + <h, t> + <r, t>``."""

    def forward(self, h, r, t):
        return (h * r).sum(dim=-1) + (h * t).sum(dim=-1) + (r * t).sum(dim=-1)


class ComplexTrilinearScore(nn.Module):
    """ComplEx: ``Re(<h, r, conj(t)>)`` with (real, imaginary) halves."""

    def forward(self, h, r, t):
        h_re, h_im = torch.chunk(h, 2, dim=-1)
        r_re, r_im = torch.chunk(r, 2, dim=-1)
        t_re, t_im = torch.chunk(t, 2, dim=-1)
        real = h_re * r_re * t_re + h_re * r_im * t_im + h_im * r_re * t_im - h_im * r_im * t_re
        return real.sum(dim=-1)


class QuaternionScore(nn.Module):
    """QuatE: ``<h (x) r, t>`` with the Hamilton product over four quarters."""

    def forward(self, h, r, t):
        a, b, c, d = torch.chunk(h, 4, dim=-1)
        e, f, g, k = torch.chunk(r, 4, dim=-1)
        t0, t1, t2, t3 = torch.chunk(t, 4, dim=-1)
        p0 = a * e - b * f - c * g - d * k
        p1 = a * f + b * e + c * k - d * g
        p2 = a * g - b * k + c * e + d * f
        p3 = a * k + b * g - c * f + d * e
        return (p0 * t0 + p1 * t1 + p2 * t2 + p3 * t3).sum(dim=-1)


class CircularCorrelationScore(nn.Module):
    """HolE: ``<corr(h, t), r>`` via FFT, computed in float32."""

    def forward(self, h, r, t):
        h = h.float()
        r = r.float()
        t = t.float()
        corr = torch.fft.irfft(torch.fft.rfft(h, dim=-1).conj() * torch.fft.rfft(t, dim=-1), n=h.shape[-1], dim=-1)
        return (corr * r).sum(dim=-1)


class CoreTensorScore(nn.Module):
    """TuckER: ``BN(h)^T (r x_1 W) BN(t)`` with a (d_r, d_e, d_e) core tensor."""

    def __init__(self, entity_dim: int, relation_dim: int, dropout: float = 0.2):
        super().__init__()
        self.entity_dim = entity_dim
        self.relation_dim = relation_dim
        self.core_tensor = nn.Parameter(torch.empty(relation_dim, entity_dim, entity_dim))
        nn.init.xavier_uniform_(self.core_tensor.data)
        self.head_norm = nn.BatchNorm1d(entity_dim)
        self.tail_norm = nn.BatchNorm1d(entity_dim)
        self.input_dropout = Dropout(dropout)
        self.core_dropout = Dropout(dropout)

    def forward(self, h, r, t):
        lead = h.shape[:-1]
        h_n = self.input_dropout(self.head_norm(h.reshape(-1, self.entity_dim)).view(*lead, self.entity_dim))
        t_n = self.input_dropout(self.tail_norm(t.reshape(-1, self.entity_dim)).view(*lead, self.entity_dim))
        core = torch.matmul(r.reshape(-1, self.relation_dim), self.core_tensor)
        core = self.core_dropout(core.view(*r.shape[:-1], self.entity_dim, self.entity_dim))
        projected = torch.matmul(h_n.unsqueeze(-2), core).squeeze(-2)
        return (projected * t_n).sum(dim=-1)


class TripleMLPScore(nn.Module):
    """ER-MLP: ``MLP([h; r; t])``."""

    def __init__(self, dim: int, hidden_dim: int = 2048):
        super().__init__()
        self.triple_mlp = nn.Sequential(nn.Linear(3 * dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))

    def forward(self, h, r, t):
        return self.triple_mlp(torch.cat([h, r, t], dim=-1)).squeeze(-1)


class ConvolutionalTripleScore(nn.Module):
    """ConvKB: 1x1 Conv1d over the stacked [h, r, t] rows, ReLU, linear read-out."""

    def __init__(self, dim: int, num_filters: int = 32, dropout: float = 0.3):
        super().__init__()
        self.dim = dim
        self.filters = nn.Conv1d(3, num_filters, kernel_size=1)
        self.feature_dropout = Dropout(dropout)
        self.score_projection = nn.Linear(num_filters * dim, 1)

    def forward(self, h, r, t):
        lead = h.shape[:-1]
        rows = torch.stack(
            [h.reshape(-1, self.dim), r.reshape(-1, self.dim), t.reshape(-1, self.dim)], dim=1
        )  # (M, 3, D)
        features = F.relu(self.filters(rows)).view(rows.size(0), -1)
        return self.score_projection(self.feature_dropout(features)).squeeze(-1).view(*lead)


def build_triple_scorer(triples_layer: str, dim: int = REFERENCE_TRIPLES_DIM) -> nn.Module:
    """Triple scorer for a ``triples_layer`` value (case-sensitive)."""
    mode = triples_layer
    if mode in ("ComplEx", "SimplE") and dim % 2 != 0:
        raise ValueError(f"{mode} requires an even embedding dimension, got {dim}")
    if mode == "QuatE" and dim % 4 != 0:
        raise ValueError(f"QuatE requires an embedding dimension divisible by 4, got {dim}")
    simple = {
        "UM": UnstructuredScore,
        "SE": StructuredEmbeddingScore,
        "TransE": TranslationScore,
        "DistMult": TrilinearScore,
        "SimplE": SplitTrilinearScore,
        "DistMA": PairwiseDotScore,
        "ComplEx": ComplexTrilinearScore,
        "QuatE": QuaternionScore,
        "HolE": CircularCorrelationScore,
    }
    if mode in simple:
        return simple[mode]()
    sized = {
        "TransH": HyperplaneTranslationScore,
        "TransF": ScaledTranslationScore,
        "PairRE": PairedScalingScore,
        "TripleRE": WeightedPairedScalingScore,
        "ERMLP": TripleMLPScore,
        "ConvKB": ConvolutionalTripleScore,
    }
    if mode in sized:
        return sized[mode](dim)
    if mode == "TuckER":
        return CoreTensorScore(dim, dim)
    raise ValueError(
        f"Unsupported triples_layer {triples_layer!r}; supported values: "
        f"{', '.join(SUPPORTED_TRIPLES_LAYERS)} (or None)"
    )


# ---------------------------------------------------------------------------
# entity selection and pairing (pure tensor functions)
# ---------------------------------------------------------------------------


@dataclass
class EntitySelection:
    """Spans chosen as relation arguments, packed left in flat span order.

    ``rep``: (B, E, D); ``mask``: (B, E) long (1 = real entity); ``spans``:
    (B, E, 2) long word-level ``(start, end)`` with inclusive end (padding rows
    are ``(0, 0)``), or None; ``flat_index``: (B, E) long index into the
    flattened ``W*K`` span axis (padding rows 0).
    """

    rep: torch.Tensor
    mask: torch.Tensor
    spans: Optional[torch.Tensor]
    flat_index: torch.Tensor


@dataclass
class CandidatePairs:
    """Directed entity pairs to classify.

    ``index``: (B, N, 2) long ``(head, tail)`` entity indices, -1 on padding;
    ``mask``: (B, N) bool; ``head`` / ``tail``: (B, N, D) representations
    (padding rows hold entity 0's representation, or zeros when no sample in the
    batch has any pair - then N == 1).
    """

    index: torch.Tensor
    mask: torch.Tensor
    head: torch.Tensor
    tail: torch.Tensor


def span_logits_from_prompts(span_rep: torch.Tensor, entity_prompts: torch.Tensor) -> torch.Tensor:
    """Entity span logits ``(B, W, K, C)`` from span reps and projected entity prompts."""
    return torch.einsum("BLKD,BCD->BLKC", span_rep, entity_prompts)


def _pack_rows(values: torch.Tensor, keep: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Move the kept rows of ``values`` (B, N, ...) to the front; zero-pad to max kept."""
    B, N = keep.shape
    counts = keep.sum(dim=1)
    width = int(counts.max().item()) if B > 0 else 0
    if width == N:
        # every row kept in every sample: nothing to move
        return values, keep.long()
    packed = values.new_zeros((B, width) + tuple(values.shape[2:]))
    packed_mask = keep.new_zeros((B, width), dtype=torch.long)
    batch_idx, old_idx = torch.where(keep)
    new_idx = (keep.long().cumsum(dim=1) - 1)[keep]
    packed[batch_idx, new_idx] = values[batch_idx, old_idx]
    packed_mask[batch_idx, new_idx] = 1
    return packed, packed_mask


def gather_entities(
    span_rep: torch.Tensor,
    keep: torch.Tensor,
    span_idx: Optional[torch.Tensor] = None,
) -> EntitySelection:
    """Pack the spans flagged in ``keep`` (B, W*K) (or (B, W, K)) into an entity list.

    Use this to pair spans of your own choosing; :func:`select_entities` is the
    reference's own (threshold-based) choice.
    """
    B = span_rep.size(0)
    D = span_rep.size(-1)
    flat_rep = span_rep.reshape(B, -1, D)
    keep = keep.reshape(B, -1).bool()
    rep, mask = _pack_rows(flat_rep, keep)
    positions = torch.arange(keep.size(1), device=keep.device).unsqueeze(0).expand(B, -1)
    flat_index, _ = _pack_rows(positions.unsqueeze(-1), keep)
    spans = None
    if span_idx is not None:
        spans, _ = _pack_rows(span_idx.reshape(B, -1, 2).long(), keep)
    return EntitySelection(rep=rep, mask=mask, spans=spans, flat_index=flat_index.squeeze(-1))


def select_entities(
    span_rep: torch.Tensor,
    span_logits: torch.Tensor,
    span_mask: torch.Tensor,
    span_idx: Optional[torch.Tensor] = None,
    threshold: float = 0.5,
    top_k: Optional[int] = None,
) -> EntitySelection:
    """The reference's inference-time choice of relation arguments.

    A span is kept when ``max_c sigmoid(span_logits[b, w, k, c]) > threshold``
    and its span mask is set.  No flat-NER / overlap filtering happens here, so
    overlapping spans can all become entities.  ``top_k`` (never set by the
    reference at inference) keeps the top_k highest-probability spans, with
    rejected spans competing at -1.

    Shapes: span_rep (B, W, K, D); span_logits (B, W, K, C); span_mask
    (B, W*K) or (B, W, K); span_idx (B, W*K, 2) or None.
    """
    B = span_rep.size(0)
    span_mask = span_mask.reshape(B, -1)
    if span_logits.size(-1) > 0:
        best_prob = torch.sigmoid(span_logits).max(dim=-1).values.reshape(B, -1)
        keep = (best_prob > threshold) & span_mask.bool()
    else:
        best_prob = torch.zeros_like(span_mask, dtype=span_rep.dtype)
        keep = torch.zeros_like(span_mask, dtype=torch.bool)
    if top_k is not None and top_k > 0:
        ranked = best_prob.masked_fill(~keep, -1.0)
        chosen = ranked.topk(k=min(top_k, ranked.size(1)), dim=1).indices
        keep = torch.zeros_like(keep)
        keep.scatter_(1, chosen, True)
    if span_idx is not None:
        # the reference zeroes the boundaries of masked spans before selecting
        span_idx = span_idx.reshape(B, -1, 2) * span_mask.unsqueeze(-1).long()
    return gather_entities(span_rep, keep, span_idx)


def pairs_from_lists(
    pair_lists: Iterable[torch.Tensor], entity_rep: torch.Tensor, batch_size: int
) -> CandidatePairs:
    pair_lists = list(pair_lists)
    device = entity_rep.device
    D = entity_rep.size(-1)
    N = max((p.shape[0] for p in pair_lists), default=0)
    if N == 0:
        index = torch.full((batch_size, 1, 2), -1, dtype=torch.long, device=device)
        mask = torch.zeros((batch_size, 1), dtype=torch.bool, device=device)
        zeros = torch.zeros((batch_size, 1, D), dtype=entity_rep.dtype, device=device)
        return CandidatePairs(index=index, mask=mask, head=zeros, tail=zeros)
    index = torch.full((batch_size, N, 2), -1, dtype=torch.long, device=device)
    mask = torch.zeros((batch_size, N), dtype=torch.bool, device=device)
    for b, pairs in enumerate(pair_lists):
        index[b, : pairs.shape[0]] = pairs
        mask[b, : pairs.shape[0]] = True
    rows = torch.arange(batch_size, device=device).unsqueeze(1)
    head = entity_rep[rows, index[..., 0].clamp_min(0)]
    tail = entity_rep[rows, index[..., 1].clamp_min(0)]
    return CandidatePairs(index=index, mask=mask, head=head, tail=tail)


def candidate_pairs_from_adjacency(
    adjacency: torch.Tensor, entity_rep: torch.Tensor, adjacency_threshold: float = 0.5
) -> CandidatePairs:
    """Directed pairs ``(i, j)``, ``i != j``, with ``adjacency[b, i, j] > threshold``.

    Ordered row-major (by head, then tail).  Only the adjacency values decide -
    padded entities are excluded because the scorers zero their rows/columns.
    """
    B, E, _ = adjacency.shape
    off_diagonal = ~torch.eye(E, dtype=torch.bool, device=adjacency.device)
    pair_lists = [torch.nonzero((adjacency[b] > adjacency_threshold) & off_diagonal) for b in range(B)]
    return pairs_from_lists(pair_lists, entity_rep, B)


def all_candidate_pairs(entity_rep: torch.Tensor, entity_mask: torch.Tensor) -> CandidatePairs:
    """Every directed pair of distinct real entities (``relations_layer="none"``)."""
    B = entity_rep.size(0)
    counts = entity_mask.long().sum(dim=1).tolist()
    pair_lists = []
    for n in counts:
        if n < 2:
            pair_lists.append(torch.zeros(0, 2, dtype=torch.long, device=entity_rep.device))
            continue
        off_diagonal = ~torch.eye(n, dtype=torch.bool, device=entity_rep.device)
        pair_lists.append(torch.nonzero(off_diagonal))
    return pairs_from_lists(pair_lists, entity_rep, B)


# ---------------------------------------------------------------------------
# the head
# ---------------------------------------------------------------------------


@dataclass
class RelationHeadOutput:
    """Everything the relation part produces for one batch.

    entities: the selected relation arguments (see :class:`EntitySelection`).
    adjacency: (B, E, E) adjacency probabilities, or None when
        ``relations_layer == "none"``.
    pairs: the candidate pairs (see :class:`CandidatePairs`), N pairs.
    rel_logits: (B, N, R) relation logits (apply sigmoid for probabilities;
        for triple scorers these are the raw triple scores).
    pair_rep: (B, N, D) projected pair representations (pair-projection
        models only), else None.
    """

    entities: EntitySelection
    adjacency: Optional[torch.Tensor]
    pairs: CandidatePairs
    rel_logits: torch.Tensor
    pair_rep: Optional[torch.Tensor] = None


class RelationHead(nn.Module):
    """Relation part of a GLiNER span relex model.

    Args:
        hidden_size: model hidden size D (config ``hidden_size``).
        relations_layer: config ``relations_layer`` - one of
            :data:`SUPPORTED_RELATIONS_LAYERS` (case-insensitive except
            ``"none"``).
        triples_layer: config ``triples_layer`` - None (pair projection) or
            one of :data:`SUPPORTED_TRIPLES_LAYERS`.
        dropout: config ``dropout`` (only used in training mode).

    Submodules (``None`` when absent): ``adjacency_scorer``,
    ``pair_projection`` (Linear(2D, 4D), ReLU, Dropout, Linear(4D, D)),
    ``triple_scorer``.
    """

    def __init__(
        self,
        hidden_size: int,
        relations_layer: str = "dot",
        triples_layer: Optional[str] = None,
        dropout: float = 0.4,
    ):
        super().__init__()
        if relations_layer is None:
            raise ValueError(
                "relations_layer is None: this is not a relex model; supported values: "
                + ", ".join(SUPPORTED_RELATIONS_LAYERS)
            )
        self.hidden_size = hidden_size
        self.relations_layer = relations_layer
        self.triples_layer = triples_layer
        # the reference compares against "none" before lower-casing
        if relations_layer == "none":
            self.adjacency_scorer: Optional[nn.Module] = None
        else:
            self.adjacency_scorer = build_adjacency_scorer(relations_layer, hidden_size)
        if triples_layer is not None:
            self.triple_scorer: Optional[nn.Module] = build_triple_scorer(triples_layer)
            self.pair_projection: Optional[nn.Module] = None
        else:
            self.triple_scorer = None
            self.pair_projection = _two_layer_projection(2 * hidden_size, hidden_size, dropout)

    # -- checkpoint helpers -------------------------------------------------

    def load_reference_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
        """Load the relation tensors of a full reference state dict (keys renamed)."""
        return self.load_state_dict(relation_state_dict_from_reference(state_dict), strict=strict)

    # -- stages ----------------------------------------------------------------

    def score_adjacency(self, entity_rep: torch.Tensor, entity_mask: torch.Tensor) -> Optional[torch.Tensor]:
        """(B, E, D), (B, E) -> (B, E, E) adjacency probabilities (None for "none")."""
        if self.adjacency_scorer is None:
            return None
        return self.adjacency_scorer(entity_rep, entity_mask)

    def make_pairs(
        self,
        entity_rep: torch.Tensor,
        entity_mask: torch.Tensor,
        adjacency: Optional[torch.Tensor],
        adjacency_threshold: float = 0.5,
    ) -> CandidatePairs:
        """Candidate pairs: by adjacency threshold, or all pairs without an adjacency layer."""
        if self.adjacency_scorer is None or adjacency is None:
            return all_candidate_pairs(entity_rep, entity_mask)
        return candidate_pairs_from_adjacency(adjacency, entity_rep, adjacency_threshold)

    def score_relations(
        self, head_rep: torch.Tensor, tail_rep: torch.Tensor, rel_prompts: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, N, D) heads, (B, N, D) tails, (B, R, D) relation prompts -> ((B, N, R) logits, pair reps)."""
        if self.pair_projection is not None:
            pair_rep = self.pair_projection(torch.cat((head_rep, tail_rep), dim=-1))
            return torch.einsum("BND,BCD->BNC", pair_rep, rel_prompts), pair_rep
        B, N, D = head_rep.shape
        R = rel_prompts.size(1)
        heads = head_rep.unsqueeze(2).expand(B, N, R, D).reshape(B * N * R, D)
        tails = tail_rep.unsqueeze(2).expand(B, N, R, D).reshape(B * N * R, D)
        rels = rel_prompts.unsqueeze(1).expand(B, N, R, D).reshape(B * N * R, D)
        return self.triple_scorer(heads, rels, tails).view(B, N, R), None

    # -- bounded-memory inference over one sample ----------------------------------------------
    #
    # reference_forward() builds every candidate pair of a batch at once, as the reference does: N = E^2 pairs
    # in the worst case, each carrying a (2D -> 4D -> D) projection, which is what made the reference
    # need tens of GB on a few hundred entities. The methods below give the same pairs, in the same
    # order, with the same scores, a bounded block at a time.

    def candidate_pair_blocks(
        self,
        entity_rep: torch.Tensor,
        entity_mask: torch.Tensor,
        adjacency_threshold: float,
        block_cells: int = ADJACENCY_BLOCK_CELLS,
    ) -> Iterator[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """One sample's candidate pairs, ``entity_rep`` (E, D) and ``entity_mask`` (E,), as
        successive ``(index (n, 2) long, adjacency (n,) or None)`` blocks whose concatenation is
        :meth:`make_pairs`' row-major list. Each block covers at most ``block_cells`` (head, tail)
        cells (at least one head row), so memory does not grow with E^2."""
        E = entity_rep.size(0)
        device = entity_rep.device
        rows_per_block = max(1, block_cells // max(E, 1))
        if self.adjacency_scorer is None:
            # the reference pairs the first n entities, n = the number of real ones
            n = int(entity_mask.sum())
            for start in range(0, n, rows_per_block):
                stop = min(n, start + rows_per_block)
                heads = torch.arange(start, stop, device=device).repeat_interleave(n)
                tails = torch.arange(n, device=device).repeat(stop - start)
                distinct = heads != tails
                yield torch.stack((heads[distinct], tails[distinct]), dim=1), None
            return
        if E < 2:
            return
        reps, mask = entity_rep.unsqueeze(0), entity_mask.unsqueeze(0)
        score_rows = getattr(self.adjacency_scorer, "score_rows", None)
        # only the mlp scorer costs more than E x E to compute; the others are scored whole once
        whole = None if score_rows is not None else self.adjacency_scorer(reps, mask)[0]
        for start in range(0, E, rows_per_block):
            stop = min(E, start + rows_per_block)
            block = score_rows(reps, mask, start, stop)[0] if whole is None else whole[start:stop]
            passing = block > adjacency_threshold
            rows = torch.arange(stop - start, device=device)
            passing[rows, rows + start] = False  # no self pairs
            local = torch.nonzero(passing)  # row-major
            values = block[local[:, 0], local[:, 1]]
            local[:, 0] += start
            yield local, values

    def pairs_per_chunk(self, num_relations: int) -> int:
        """How many pairs of one sample a :meth:`forward` call classifies at inference: a triple scorer expands
        every pair to one row per relation label, the pair projection does not."""
        if self.pair_projection is not None:
            return PAIRS_PER_CHUNK
        return max(1, PAIRS_PER_CHUNK // max(num_relations, 1))

    def forward(self, entity_rep: torch.Tensor, pair_index: torch.Tensor, rel_prompts: torch.Tensor) -> torch.Tensor:
        """The relation forward: (B, E, D) entity vectors, (B, N, 2) (head, tail) pairs (negative
        on padding, which reads entity 0), (B, R, D) relation prompts -> (B, N, R) relation logits.

        Training calls it on its gold and sampled pairs, inference on each window's candidate pairs
        a bounded chunk at a time (:meth:`candidate_pair_blocks`, :meth:`pairs_per_chunk`)."""
        index = pair_index.clamp_min(0)
        rows = torch.arange(index.size(0), device=index.device).unsqueeze(1)
        logits, _ = self.score_relations(entity_rep[rows, index[..., 0]], entity_rep[rows, index[..., 1]], rel_prompts)
        return logits

    def reference_forward(
        self,
        span_rep: torch.Tensor,
        span_mask: torch.Tensor,
        rel_prompts: torch.Tensor,
        span_idx: Optional[torch.Tensor] = None,
        *,
        span_logits: Optional[torch.Tensor] = None,
        entity_prompts: Optional[torch.Tensor] = None,
        entity_keep: Optional[torch.Tensor] = None,
        threshold: float = 0.5,
        adjacency_threshold: Optional[float] = None,
    ) -> RelationHeadOutput:
        """The reference's relation part in one batch call, every candidate pair at once, with its
        padding: the specification the streamed inference (:meth:`candidate_pair_blocks` and
        :meth:`forward` per chunk) and the reference checkpoints are checked against.

        Args:
            span_rep: (B, W, K, D) span representations.
            span_mask: (B, W*K) or (B, W, K) valid-span mask.
            rel_prompts: (B, R, D) raw ``<<REL>>`` token embeddings (after the
                encoder's output projection, NOT through ``prompt_rep_layer``).
            span_idx: (B, W*K, 2) word-level (start, end-inclusive) per span;
                only needed to report ``entities.spans``.
            span_logits: (B, W, K, C) entity logits; or give
            entity_prompts: (B, C, D) projected entity prompts to compute them.
            entity_keep: (B, W*K) bool - pair exactly these spans instead of the
                reference's threshold selection.
            threshold: entity threshold for the reference selection.
            adjacency_threshold: pair threshold; defaults to ``threshold`` (as
                in the reference's ``inference``).
        """
        if adjacency_threshold is None:
            adjacency_threshold = threshold
        if entity_keep is not None:
            entities = gather_entities(
                span_rep,
                entity_keep.reshape(span_rep.size(0), -1).bool() & span_mask.reshape(span_rep.size(0), -1).bool(),
                span_idx,
            )
        else:
            if span_logits is None:
                if entity_prompts is None:
                    raise ValueError("pass span_logits or entity_prompts (or entity_keep)")
                span_logits = span_logits_from_prompts(span_rep, entity_prompts)
            entities = select_entities(span_rep, span_logits, span_mask, span_idx, threshold)
        adjacency = self.score_adjacency(entities.rep, entities.mask)
        pairs = self.make_pairs(entities.rep, entities.mask, adjacency, adjacency_threshold)
        rel_logits, pair_rep = self.score_relations(pairs.head, pairs.tail, rel_prompts)
        return RelationHeadOutput(
            entities=entities, adjacency=adjacency, pairs=pairs, rel_logits=rel_logits, pair_rep=pair_rep
        )


def relation_prompt_vectors(
    token_embeddings: torch.Tensor, inputs, rel_token_id: int, embed_rel_token: bool, count: int
) -> torch.Tensor:
    """(B, count, D) raw ``<<REL>>`` prompt vectors of an encoded batch (``inputs``: its input ids and
    attention mask): what the relation head scores pairs against, in training and inference."""
    vectors, _ = gather_prompt_vectors(
        token_embeddings, inputs.input_ids, inputs.attention_mask, rel_token_id, embed_rel_token, count=count
    )
    return vectors


def build_relation_head(config: Mapping[str, Any]) -> Optional[RelationHead]:
    """Build the head from a GLiNER config dict (``gliner_config.json``).

    Returns None when ``relations_layer`` is absent/None (not a relex model).
    Raises ValueError for unsupported layer values. Span and token-level relex
    models share this head: they differ only in how the entity list is chosen
    (span scores here, start/end/inside token scores in
    :mod:`spacy_gliner.inference.token_relations`), not in adjacency, pairing or scoring.
    """
    relations_layer = config.get("relations_layer")
    if relations_layer is None:
        return None
    return RelationHead(
        hidden_size=int(config.get("hidden_size", 512)),
        relations_layer=relations_layer,
        triples_layer=config.get("triples_layer"),
        dropout=float(config.get("dropout", 0.4)),
    )
