"""gliner_linker: mention vectors, linking, NIL, candidates extension, scorer, serialization, bad input.

The model is a bi-encoder GLiNER on the real MiniLM encoder with random (seeded) heads, built
once with ``new_checkpoint``: behaviour is under test here, not accuracy.
"""
import json
import shutil
import warnings

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc, Span
from spacy.training import Example

import spacy_gliner.components.linker  # noqa: F401  (registers the factory without the entry point)
from spacy_gliner.components.linker import CANDIDATES_KEY, NIL
from support import minilm_dir

MAX_WIDTH = 4
ENTITIES = [
    {"id": "Q90", "name": "Paris", "types": ["city"], "prior": 50, "alias_priors": {"Paris": 40, "City of Light": 5}},
    {"id": "Q47899", "name": "Paris Hilton", "types": ["person"], "prior": 10, "alias_priors": {"Paris": 2}},
    {"id": "Q142", "name": "France", "types": ["country"], "prior": 60},
    {"id": "Q76", "name": "Barack Obama", "description": "44th president of the United States", "aliases": ["Obama"], "prior": 30},
    {"id": "Q312", "name": "Apple Inc.", "types": ["company"], "aliases": ["Apple"], "prior": 20},
    {"id": "Q89", "name": "apple", "types": ["fruit"], "aliases": ["Apple"], "prior": 5},
    {"id": "Q1", "name": "University of California, Los Angeles", "types": ["university"], "aliases": ["UCLA"]},
]


def write_kb(path, entities=ENTITIES):
    path.write_text("".join(json.dumps(e) + "\n" for e in entities), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from spacy_gliner.modeling.checkpoint import save_checkpoint
    from spacy_gliner.modeling.new_model import new_checkpoint

    directory = tmp_path_factory.mktemp("linker_model") / "bi"
    save_checkpoint(new_checkpoint(minilm_dir(), label_encoder=minilm_dir(), hidden_size=128, max_width=MAX_WIDTH), directory)
    return directory


@pytest.fixture()
def kb_path(tmp_path):
    return write_kb(tmp_path / "kb.jsonl")


def make_nlp(model_dir, kb_path, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_linker", config={"model": str(model_dir), "kb": str(kb_path), **config})
    return nlp


def doc_with_ents(nlp, text, ents):
    doc = nlp.make_doc(text)
    doc.ents = [doc.char_span(text.index(t), text.index(t) + len(t), label=label) for t, label in ents]
    return doc


TEXT = "Barack Obama flew to Paris , France , and met Apple engineers from the University of California , Los Angeles ."
ENTS = [("Barack Obama", "PER"), ("Paris", "LOC"), ("France", "LOC"), ("Apple", "ORG"),
        ("University of California , Los Angeles", "ORG")]


def test_span_vectors_match_the_span_head_and_extend_it(model_dir):
    from spacy_gliner.inference.linking import MentionEncoder
    from spacy_gliner.modeling.checkpoint import load_checkpoint

    encoder = MentionEncoder(load_checkpoint(model_dir))
    words = TEXT.split()
    batch = encoder.inputs.build([encoder.inputs.word_pieces(words)])
    with torch.inference_mode():
        reps = encoder.model.represent(batch)
        head = encoder.model.span_head(reps.words)[0]  # (W, K, D)
        mentions = [(0, 2), (4, 5), (13, 19)]  # the last is 6 words > max_width
        vectors = encoder.mention_vectors([words], [mentions])[0]
    for (start, end), vector in zip(mentions[:2], vectors):
        assert np.allclose(vector, head[start, end - start - 1].numpy(), atol=1e-5)
    long_vector = vectors[2]
    assert long_vector.shape == (128,) and np.isfinite(long_vector).all()
    assert not np.allclose(long_vector, head[13, MAX_WIDTH - 1].numpy(), atol=1e-3)  # true endpoints, not a cut span
    # Entity texts are batched by length; the output keeps the input order.
    texts = ["Barack Obama: 44th president of the United States", "France", "Paris (city)"]
    together = encoder.encode_entities(texts)
    assert np.allclose(together, np.concatenate([encoder.encode_entities([t]) for t in texts]), atol=1e-4)
    # A document longer than one window: every mention still gets a vector (context differs).
    small = MentionEncoder(encoder.checkpoint, max_window_words=10, window_overlap=8)
    windowed = small.mention_vectors([words], [mentions[:2]])[0]
    assert windowed.shape == (2, 128) and np.isfinite(windowed).all()


def test_links_ents_with_ranked_candidates_that_survive_to_bytes(model_dir, kb_path):
    nlp = make_nlp(model_dir, kb_path, threshold=0.0, top_k=10)
    linker = nlp.get_pipe("gliner_linker")
    doc = nlp(doc_with_ents(nlp, TEXT, ENTS))
    kb_ids = {e.id for e in linker.kb.iter_entities()}
    for ent in doc.ents:
        ranked = ent._.gliner_candidates
        assert ranked, ent.text
        scores = [s for _, s in ranked]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
        assert ent.kb_id_ == ranked[0][0] and ent.kb_id_ in kb_ids  # threshold 0: always the best
    # Exact alias candidates are among those scored: "Apple" may be the company or the fruit.
    apple = [e for e in doc.ents if e.text == "Apple"][0]
    assert {"Q312", "Q89"} & {eid for eid, _ in apple._.gliner_candidates}
    # Stored in user_data keyed by character offsets (stable through retokenization): survives doc.to_bytes.
    assert (CANDIDATES_KEY, apple.start_char, apple.end_char) in doc.user_data
    restored = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert [(e.text, e.kb_id_, e._.gliner_candidates) for e in restored.ents] == [
        (e.text, e.kb_id_, e._.gliner_candidates) for e in doc.ents
    ]
    assert Span(doc, 0, 1)._.gliner_candidates is None  # never linked
    # The embedding store is beside the KB, float16, one row per entity.
    store = kb_path.with_name(kb_path.name + ".gliner_embeddings")
    vectors = np.load(store / "embeddings.npy")
    assert vectors.dtype == np.float16 and vectors.shape == (len(ENTITIES), 128)


def test_threshold_gives_nil_and_no_candidates_gives_nil(model_dir, kb_path):
    nlp = make_nlp(model_dir, kb_path, threshold=0.9)
    doc = nlp(doc_with_ents(nlp, TEXT, ENTS))
    for ent in doc.ents:
        assert 1 <= len(ent._.gliner_candidates) <= 5  # top_k (default 5) of the merged candidates
        best = ent._.gliner_candidates[0]
        assert ent.kb_id_ == (best[0] if best[1] >= 0.9 else NIL)
    exact_only = make_nlp(model_dir, kb_path, threshold=0.0,
                          candidates={"@misc": "spacy_gliner.ExactAliasCandidates.v1"})
    doc = exact_only(doc_with_ents(exact_only, "Zzyzx met Obama .", [("Zzyzx", "PER"), ("Obama", "PER")]))
    zzyzx, obama = doc.ents
    assert zzyzx.kb_id_ == NIL and zzyzx._.gliner_candidates == []
    assert obama.kb_id_ == "Q76"


def test_doc_without_ents_is_a_no_op_and_loads_nothing(model_dir, kb_path):
    nlp = make_nlp(model_dir, kb_path)
    doc = nlp("Nothing to link here .")
    assert doc.ents == () and not doc.user_data
    assert list(nlp.pipe(["one", "two"])) and nlp.get_pipe("gliner_linker")._encoder is None


def test_spans_key_links_the_span_group_too(model_dir, kb_path):
    nlp = make_nlp(model_dir, kb_path, threshold=0.0, spans_key="sc", candidates={"@misc": "spacy_gliner.ExactAliasCandidates.v1"})
    doc = nlp.make_doc("Obama visited France .")
    doc.spans["sc"] = [Span(doc, 0, 1, label="PER"), Span(doc, 2, 3, label="LOC")]
    doc.spans["sc"].attrs["scores"] = [0.9, 0.8]
    doc = nlp(doc)
    assert [s.kb_id_ for s in doc.spans["sc"]] == ["Q76", "Q142"]
    assert doc.spans["sc"].attrs["scores"] == [0.9, 0.8]
    assert doc.spans["sc"][1]._.gliner_candidates[0][0] == "Q142"


def test_scorer_and_unknown_gold_ids(model_dir, kb_path):
    nlp = make_nlp(model_dir, kb_path, threshold=0.0, candidates={"@misc": "spacy_gliner.ExactAliasCandidates.v1"})
    text = "Obama visited France and Zzyzx ."
    predicted = nlp(doc_with_ents(nlp, text, [("Obama", "PER"), ("France", "LOC"), ("Zzyzx", "LOC")]))
    reference = nlp.make_doc(text)
    reference.ents = [Span(reference, 0, 1, "PER", kb_id="Q76"), Span(reference, 2, 3, "LOC", kb_id="Q142"),
                      Span(reference, 4, 5, "LOC", kb_id="Q_NOT_IN_KB")]
    example = Example(predicted, reference)
    with pytest.warns(UserWarning, match="Q_NOT_IN_KB"):
        scores = nlp.get_pipe("gliner_linker").score([example])
    # Obama and France right; Zzyzx has no candidates (NIL) against an unknown gold id: a miss.
    assert scores["nel_micro_p"] == pytest.approx(1.0)
    assert scores["nel_micro_r"] == pytest.approx(2 / 3)
    assert scores["nel_micro_f"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="gliner_linker.*Q_NOT_IN_KB"):
        nlp.initialize(lambda: [example])


def test_save_and_load_offline_without_the_original_kb(model_dir, tmp_path):
    kb_dir = tmp_path / "source"
    kb_dir.mkdir()
    kb_file = write_kb(kb_dir / "kb.jsonl")
    nlp = make_nlp(model_dir, kb_file, threshold=0.0)
    doc = nlp(doc_with_ents(nlp, TEXT, ENTS))
    expected = [(e.kb_id_, e._.gliner_candidates) for e in doc.ents]
    nlp.to_disk(tmp_path / "pipeline")
    data = nlp.to_bytes()
    shutil.rmtree(kb_dir)
    loaded = spacy.load(tmp_path / "pipeline")
    linker = loaded.get_pipe("gliner_linker")
    doc = loaded(doc_with_ents(loaded, TEXT, ENTS))
    got = [(e.kb_id_, e._.gliner_candidates) for e in doc.ents]
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert [s for g in got for _, s in g[1]] == pytest.approx([s for e in expected for _, s in e[1]], abs=1e-4)
    assert linker._store is not None and len(linker.kb) == len(ENTITIES)
    # Bytes: built from the config (KB path gone), then restored.
    again = spacy.blank("en").from_config(nlp.config).from_bytes(data)
    doc = again(doc_with_ents(again, TEXT, ENTS))
    assert [e.kb_id_ for e in doc.ents] == [e[0] for e in expected]


@pytest.mark.parametrize(
    "lines, match",
    [
        ([], "empty"),
        ([{"id": "Q1", "name": "A"}, {"id": "Q1", "name": "B"}], "duplicate id 'Q1'"),
        ("truncated", "truncated"),
    ],
)
def test_bad_knowledge_bases_fail_at_add_pipe_with_the_component_name(model_dir, tmp_path, lines, match):
    path = tmp_path / "kb.jsonl"
    if lines == "truncated":
        path.write_text(json.dumps(ENTITIES[0]) + "\n" + json.dumps(ENTITIES[1])[:20], encoding="utf-8")
    else:
        write_kb(path, lines)
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="gliner_linker") as info:
        nlp.add_pipe("gliner_linker", config={"model": str(model_dir), "kb": str(path)})
    assert match in str(info.value)


def test_bad_settings_fail_early(model_dir, kb_path, tmp_path):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="threshold"):
        nlp.add_pipe("gliner_linker", config={"model": str(model_dir), "kb": str(kb_path), "threshold": 1.5})
    (tmp_path / "kb.csv").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="gliner_linker.*knowledge base"):
        nlp.add_pipe("gliner_linker", config={"model": str(model_dir), "kb": str(tmp_path / "kb.csv")})


def test_sqlite_kb_referenced_by_path_survives_spacy_load(model_dir, tmp_path):
    """A large KB stays where it is (``copy_kb = false``): the saved pipeline holds its absolute path
    and its embeddings, ``spacy.load`` opens the same SQLite file; moving the file away is a clear error."""
    from spacy_gliner.kb.sqlite import SQLiteKB

    db = tmp_path / "kb.sqlite"
    SQLiteKB.from_jsonl(write_kb(tmp_path / "kb.jsonl"), db).close()
    nlp = make_nlp(model_dir, db, threshold=0.0, copy_kb=False, top_k=10)
    linker = nlp.get_pipe("gliner_linker")
    assert isinstance(linker.kb, SQLiteKB)
    doc = nlp(doc_with_ents(nlp, TEXT, ENTS))
    expected = [(e.kb_id_, e._.gliner_candidates) for e in doc.ents]
    assert all(kb_id in {e["id"] for e in ENTITIES} for kb_id, _ in expected)
    nlp.to_disk(tmp_path / "pipeline")
    saved = json.loads((tmp_path / "pipeline" / "gliner_linker" / "cfg").read_text())
    assert saved["kb_path"] == str(db.resolve()) and not (tmp_path / "pipeline" / "gliner_linker" / "kb").exists()
    loaded = spacy.load(tmp_path / "pipeline")
    restored = loaded.get_pipe("gliner_linker")
    assert isinstance(restored.kb, SQLiteKB) and restored.kb.db_path.resolve() == db.resolve()
    assert restored._store is not None  # the saved embeddings match the KB and the weights: not recomputed
    doc = loaded(doc_with_ents(loaded, TEXT, ENTS))
    assert [e.kb_id_ for e in doc.ents] == [kb_id for kb_id, _ in expected]
    assert [s for e in doc.ents for _, s in e._.gliner_candidates] == pytest.approx(
        [s for _, c in expected for _, s in c], abs=1e-4)
    # copy_kb = true copies the database into the pipeline: independent of the original file.
    copied = make_nlp(model_dir, db, threshold=0.0, top_k=10)
    copied.to_disk(tmp_path / "copied")
    assert (tmp_path / "copied" / "gliner_linker" / "kb" / "kb.sqlite").exists()
    db.rename(tmp_path / "moved.sqlite")
    again = spacy.load(tmp_path / "copied")
    assert [e.kb_id_ for e in again(doc_with_ents(again, TEXT, ENTS)).ents] == [kb_id for kb_id, _ in expected]
    with pytest.raises(FileNotFoundError, match="gliner_linker.*kb.sqlite"):
        spacy.load(tmp_path / "pipeline")


def test_entities_without_description_or_aliases_are_linked_by_name(model_dir, tmp_path):
    from spacy_gliner.kb.entities import entity_text

    bare = [{"id": "Q1", "name": "Zanzibar"}, {"id": "Q2", "name": "Zanzibar City"}, {"id": "Q3", "name": "Tanzania"}]
    nlp = make_nlp(model_dir, write_kb(tmp_path / "kb.jsonl", bare), threshold=0.0,
                   candidates={"@misc": "spacy_gliner.ExactAliasCandidates.v1"})
    linker = nlp.get_pipe("gliner_linker")
    assert [entity_text(e) for e in linker.kb.iter_entities()] == ["Zanzibar", "Zanzibar City", "Tanzania"]
    doc = nlp(doc_with_ents(nlp, "Zanzibar is part of Tanzania .", [("Zanzibar", "LOC"), ("Tanzania", "LOC")]))
    assert [(e.kb_id_, [i for i, _ in e._.gliner_candidates]) for e in doc.ents] == [("Q1", ["Q1"]), ("Q3", ["Q3"])]
    assert len(linker.store) == 3  # every bare entity has a vector (its name read by the label tower)


def test_malformed_kb_line_is_reported_with_its_number_and_nothing_is_loaded(model_dir, tmp_path):
    lines = [json.dumps(ENTITIES[0]), '{"id": "Q2", "name": "B",', json.dumps(ENTITIES[2])]
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=r"gliner_linker.*line 2: malformed JSON"):
        nlp.add_pipe("gliner_linker", config={"model": str(model_dir), "kb": str(path)})
    assert "gliner_linker" not in nlp.pipe_names
    from spacy_gliner.kb.sqlite import SQLiteKB

    with pytest.raises(ValueError, match="line 2"):
        SQLiteKB.from_jsonl(path, tmp_path / "kb.sqlite")
    assert not (tmp_path / "kb.sqlite").exists()  # all or nothing
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"not a database, e.g. a partial copy " * 20)
    with pytest.raises(ValueError, match=r"gliner_linker.*damaged.sqlite.*not a readable SQLite.*from_jsonl"):
        nlp.add_pipe("gliner_linker", config={"model": str(model_dir), "kb": str(damaged)})


# -- a missing KB path is reported early, saved pipelines still load ------------------------------


def test_missing_kb_path_fails_at_add_pipe_with_the_path_named(model_dir, tmp_path):
    missing = tmp_path / "nowhere" / "kb.jsonl"
    nlp = spacy.blank("en")
    with pytest.raises(FileNotFoundError, match=rf"gliner_linker: the knowledge base '{missing}' \(its 'kb' setting\) does not exist"):
        nlp.add_pipe("gliner_linker", config={"model": str(model_dir), "kb": str(missing)})
    assert "gliner_linker" not in nlp.pipe_names


def test_missing_kb_path_in_a_config_fails_at_initialize_and_at_the_first_doc(model_dir, tmp_path):
    """Language.from_config may build a linker whose KB from_disk will restore; when nothing
    restores it, initialize (spacy train) and the first document (even one without entities) fail."""
    from spacy.lang.en import English

    missing = tmp_path / "kb.jsonl"
    config = make_nlp(model_dir, write_kb(missing)).config
    missing.unlink()
    nlp = English.from_config(config)
    with pytest.raises(FileNotFoundError, match=rf"'{missing}' \(its 'kb' setting\) does not exist"):
        nlp.initialize()
    with pytest.raises(FileNotFoundError, match=rf"'{missing}' \(its 'kb' setting\)"):
        nlp("No entities here .")


def test_saved_pipeline_loads_without_its_config_kb_but_not_without_an_external_one(model_dir, tmp_path):
    kb = write_kb(tmp_path / "kb.jsonl")
    copied, external = make_nlp(model_dir, kb, threshold=0.0), make_nlp(model_dir, kb, threshold=0.0, copy_kb=False)
    expected = [e.kb_id_ for e in copied(doc_with_ents(copied, TEXT, ENTS)).ents]
    copied.to_disk(tmp_path / "copied")
    external.to_disk(tmp_path / "external")
    kb.unlink()
    loaded = spacy.load(tmp_path / "copied")  # the copied KB is in the pipeline: the config path is not needed
    assert [e.kb_id_ for e in loaded(doc_with_ents(loaded, TEXT, ENTS)).ents] == expected
    with pytest.raises(FileNotFoundError, match=rf"'{kb.resolve()}' \(saved in .*external/gliner_linker/cfg because 'copy_kb' is false\) does not exist"):
        spacy.load(tmp_path / "external")


def test_candidates_stay_with_their_mention_through_merge_entities(model_dir, kb_path):
    """Candidates were keyed by token offsets: after merge_entities renumbered the tokens, an
    entity read the candidates of whichever mention used to sit at its new offsets."""
    from spacy.pipeline.functions import merge_entities

    nlp = make_nlp(model_dir, kb_path, threshold=0.0)
    doc = nlp(doc_with_ents(nlp, TEXT, ENTS))
    before = {e.text: e._.gliner_candidates for e in doc.ents}
    assert all(before.values())
    doc = merge_entities(doc)
    assert {e.text: e._.gliner_candidates for e in doc.ents} == before
    restored = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert {e.text: e._.gliner_candidates for e in restored.ents} == before


def test_kb_given_by_initialize_kb_loader_or_set_kb_as_spacys_entity_linker(model_dir, tmp_path):
    """No 'kb' in the config: the KB comes from ``[initialize.components.<name>.kb_loader]``
    (``spacy_gliner.KBFromPath.v1``) or ``set_kb``, as spaCy's EntityLinker takes it."""
    from spacy_gliner.components.linker_kb import KBFromPath

    kb_file = write_kb(tmp_path / "kb.jsonl")
    configured = make_nlp(model_dir, kb_file, threshold=0.0)
    expected = [e.kb_id_ for e in configured(doc_with_ents(configured, TEXT, ENTS)).ents]
    nlp = spacy.blank("en")
    linker = nlp.add_pipe("gliner_linker", config={"model": str(model_dir), "threshold": 0.0})
    with pytest.raises(ValueError, match="gliner_linker: no knowledge base.*kb_loader"):
        nlp(doc_with_ents(nlp, TEXT, ENTS))
    nlp.config["initialize"]["components"]["gliner_linker"] = {
        "kb_loader": {"@misc": "spacy_gliner.KBFromPath.v1", "path": str(kb_file)}}
    gold = doc_with_ents(nlp, TEXT, ENTS)
    gold_ids = ["Q76", "Q90", "Q142", "Q312", "Q1"]
    gold.ents = [Span(gold, e.start, e.end, label=e.label_, kb_id=kb_id) for e, kb_id in zip(gold.ents, gold_ids)]
    nlp.initialize(lambda: [Example(nlp.make_doc(TEXT), gold)])
    assert len(linker.kb) == len(ENTITIES) and linker.kb_source == str(kb_file)
    assert [e.kb_id_ for e in nlp(doc_with_ents(nlp, TEXT, ENTS)).ents] == expected
    # A loader without a path: the KB is copied into the saved pipeline.
    other = spacy.blank("en")
    other_linker = other.add_pipe("gliner_linker", config={"model": str(model_dir), "threshold": 0.0, "copy_kb": False})
    other_linker.set_kb(lambda vocab: KBFromPath(kb_file)(vocab))
    assert other_linker.cfg["copy_kb"] and other_linker.kb_source is None
    other.to_disk(tmp_path / "saved")
    kb_file.unlink()
    loaded = spacy.load(tmp_path / "saved")
    assert [e.kb_id_ for e in loaded(doc_with_ents(loaded, TEXT, ENTS)).ents] == expected
    with pytest.raises(ValueError, match="kb_loader must be a callable"):
        other_linker.set_kb(str(kb_file))


def test_saved_fields_honour_exclude(model_dir, tmp_path):
    """``cfg``, ``kb``, ``checkpoint`` and ``embeddings`` are named fields (spaCy's EntityLinker
    saves ``kb`` so): an excluded ``kb`` is kept from the component that loads."""
    kb_file = write_kb(tmp_path / "kb.jsonl")
    nlp = make_nlp(model_dir, kb_file, threshold=0.0)
    linker = nlp.get_pipe("gliner_linker")
    expected = [(e.kb_id_, e._.gliner_candidates) for e in nlp(doc_with_ents(nlp, TEXT, ENTS)).ents]
    linker.to_disk(tmp_path / "all")
    assert {p.name for p in (tmp_path / "all").iterdir()} == {"cfg", "kb", "checkpoint", "embeddings"}
    linker.to_disk(tmp_path / "no_kb", exclude=["kb", "embeddings"])
    assert {p.name for p in (tmp_path / "no_kb").iterdir()} == {"cfg", "checkpoint"}
    with pytest.raises(FileNotFoundError, match="holds neither a knowledge base nor its path"):
        make_nlp(model_dir, kb_file).get_pipe("gliner_linker").from_disk(tmp_path / "no_kb")
    small = write_kb(tmp_path / "small.jsonl", ENTITIES[:3])
    other = make_nlp(model_dir, small, threshold=0.0).get_pipe("gliner_linker")
    other.from_disk(tmp_path / "no_kb", exclude=["kb", "embeddings"])
    assert len(other.kb) == 3 and other.cfg["threshold"] == 0.0
    other.from_bytes(linker.to_bytes(exclude=["kb"]), exclude=["kb"])
    assert len(other.kb) == 3
    other.from_bytes(linker.to_bytes())
    assert len(other.kb) == len(ENTITIES)
    doc = other(doc_with_ents(nlp, TEXT, ENTS))
    got = [(e.kb_id_, e._.gliner_candidates) for e in doc.ents]
    assert [g[0] for g in got] == [e[0] for e in expected]


def test_candidates_and_features_are_switched_through_public_methods(model_dir, kb_path):
    """What the linking project's ablations change: the generator and the mixed string features."""
    from spacy_gliner.kb.candidates import make_exact_alias_candidates

    nlp = make_nlp(model_dir, kb_path, threshold=0.0, top_k=10)
    linker = nlp.get_pipe("gliner_linker")
    linker.cfg["feature_weights"] = {"prior": 3.0, "string": 2.0}
    with_features = {e.text: e._.gliner_candidates for e in nlp(doc_with_ents(nlp, TEXT, ENTS)).ents}
    linker.set_features([])
    without = {e.text: e._.gliner_candidates for e in nlp(doc_with_ents(nlp, TEXT, ENTS)).ents}
    assert linker.cfg["features"] == [] and without != with_features
    linker.set_candidates(make_exact_alias_candidates(k=10))
    exact = {e.text: e._.gliner_candidates for e in nlp(doc_with_ents(nlp, TEXT, ENTS)).ents}
    assert {eid for eid, _ in exact["Apple"]} == {"Q312", "Q89"} and [eid for eid, _ in exact["France"]] == ["Q142"]
    with pytest.raises(ValueError, match="unknown or repeated feature"):
        linker.set_features(["no such feature"])


def test_nlp_initialize_without_data_embeds_the_kb(model_dir, kb_path):
    """``nlp.initialize()`` hands every pipe spaCy's placeholder example (a doc without entities):
    no training data, so the KB is embedded, not refused for lacking gold links."""
    nlp = make_nlp(model_dir, kb_path)
    nlp.initialize()
    linker = nlp.get_pipe("gliner_linker")
    assert linker._store is not None and len(linker._store) == len(ENTITIES)
