"""Knowledge-graph triple scorers of relex models (config ``triples_layer``): score a (head,
relation, tail) triple of vectors directly instead of projecting the pair. Checkpoints with a
``triples_layer`` load them (``modeling/checkpoint.py``, ``modeling/config.py``)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import Dropout

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


# forward(head, relation, tail), each (..., D) -> (...) scores


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
