"""Reference (``gliner`` package) state-dict names of the relation part -> ours.

Prefixes are relative to the GLiNER model root, i.e. the keys of ``GLiNER.model.state_dict()`` /
``pytorch_model.bin`` with any leading ``model.`` stripped; they are matched longest-first.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch

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
