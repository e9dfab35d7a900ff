"""gliner_ner as a spaCy component: outputs, merging, caching, serialization, windows, bad input."""
import subprocess
import sys
import warnings

import pytest
import spacy
from spacy.tokens import Doc, Span, SpanGroup

from support import DATA, crossner_labels, crossner_sentences, split_words

LABELS = crossner_labels("politics")[:6]


@pytest.fixture(scope="module")
def uni_nlp(checkpoints):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_sharp")), "labels": LABELS})
    return nlp


@pytest.fixture(scope="module")
def bi_nlp(checkpoints):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("bi_sharp")), "labels": LABELS})
    return nlp


def spans_of(doc, key="sc"):
    group = doc.spans[key]
    return [(s.start, s.end, s.label_, score) for s, score in zip(group, group.attrs["scores"])]


def assert_same_spans(a, b):
    """Same spans and labels; scores equal up to batch-padding float noise."""
    assert [[s[:3] for s in doc] for doc in a] == [[s[:3] for s in doc] for doc in b]
    assert [s[3] for doc in a for s in doc] == pytest.approx([s[3] for doc in b for s in doc], abs=1e-4)


# Records every import of transformers made by a spacy_gliner module. spaCy loads every installed
# factory's module on spacy.blank, so with spacy-transformers installed (the test extra) its own
# factory imports transformers anyway: what must hold is that none of ours does.
WATCH_TRANSFORMERS_IMPORTS = """
import builtins, sys
ours = []
real_import = builtins.__import__

def watching(name, *args, **kwargs):
    caller = sys._getframe(1).f_code.co_filename
    if name.split(".")[0] == "transformers" and "spacy_gliner" in caller:
        ours.append(caller)
    return real_import(name, *args, **kwargs)

builtins.__import__ = watching
"""


def test_blank_language_does_not_import_model_code():
    code = WATCH_TRANSFORMERS_IMPORTS + (
        "import importlib.util, spacy; nlp = spacy.blank('en')\n"
        "from spacy.util import registry; assert 'gliner_ner' in registry.factories.get_all()\n"
        "assert not ours, f'transformers imported by {ours}'\n"
        "if importlib.util.find_spec('spacy_transformers') is None:\n"
        "    assert 'transformers' not in sys.modules, 'transformers imported'\n"
        "assert 'spacy_gliner.inference.entities' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_outputs_align_with_tokens_and_ents_are_best_non_overlapping(uni_nlp):
    doc = uni_nlp(crossner_sentences("politics", 1)[0])
    spans = list(doc.spans["sc"])
    assert spans and len(doc.spans["sc"].attrs["scores"]) == len(spans)
    assert [(s.start, s.end) for s in spans] == sorted((s.start, s.end) for s in spans)
    ents = list(doc.ents)
    assert ents and all(e.label_ in LABELS for e in ents)
    assert all(a.end <= b.start for a, b in zip(ents, ents[1:]))
    assert {(e.start, e.end, e.label_) for e in ents} <= {(s.start, s.end, s.label_) for s in spans}


def test_whitespace_tokens_are_skipped_and_spans_align(uni_nlp):
    words = ["The", "  ", "European", "Union", "\n", "met", "in", "Brussels", "."]
    spaces = [True, False, True, False, False, True, True, False, False]
    doc = uni_nlp(Doc(uni_nlp.vocab, words=words, spaces=spaces))
    assert all(not t.is_space for s in doc.spans["sc"] for t in s[:1]) and all(not s[0].is_space and not s[-1].is_space for s in doc.spans["sc"])
    plain = uni_nlp(Doc(uni_nlp.vocab, words=[w for w in words if w.strip()]))
    # The model sees the same words, so the same spans come out, shifted to the token positions.
    keep = [i for i, w in enumerate(words) if w.strip()]
    shifted = [(keep[s.start], keep[s.end - 1] + 1, s.label_) for s in plain.spans["sc"]]
    assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == shifted


def test_existing_entities_and_span_groups_survive(uni_nlp):
    text = crossner_sentences("politics", 2)[1]
    doc = uni_nlp.make_doc(text)
    doc.ents = [Span(doc, 0, 2, label="GOLD")]
    doc.spans["other"] = SpanGroup(doc, name="other", spans=[Span(doc, 1, 3, label="X")])
    doc.user_data["mine"] = 42
    doc = uni_nlp(doc)
    assert (doc.ents[0].start, doc.ents[0].end, doc.ents[0].label_) == (0, 2, "GOLD")
    assert [(s.start, s.end, s.label_) for s in doc.spans["other"]] == [(1, 3, "X")]
    assert doc.user_data["mine"] == 42
    assert len(doc.ents) > 1, "new entities are merged in where they do not overlap"
    assert all(e.start >= 2 for e in doc.ents[1:])


def test_overwrite_ents_replaces_existing(checkpoints):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_sharp")), "labels": LABELS, "overwrite_ents": True})
    doc = nlp.make_doc(crossner_sentences("politics", 2)[1])
    doc.ents = [Span(doc, 0, 2, label="GOLD")]
    doc = nlp(doc)
    assert "GOLD" not in {e.label_ for e in doc.ents}
    assert {(e.start, e.end, e.label_) for e in doc.ents} <= {(s.start, s.end, s.label_) for s in doc.spans["sc"]}


def test_a_users_group_in_our_key_is_never_merged_into(uni_nlp):
    doc = uni_nlp.make_doc(crossner_sentences("politics", 1)[0])
    doc.spans["sc"] = SpanGroup(doc, name="sc", spans=[Span(doc, 0, 1, label="USER")])
    with pytest.raises(ValueError, match="'spans_key'.*'overwrite_ents'"):
        uni_nlp(doc)
    assert [s.label_ for s in doc.spans["sc"]] == ["USER"]


def test_pipe_equals_call(uni_nlp):
    texts = crossner_sentences("science", 10)
    piped = [spans_of(d) for d in uni_nlp.pipe(texts, batch_size=4)]
    single = [spans_of(uni_nlp(t)) for t in texts]
    assert_same_spans(piped, single)


def test_is_a_trainable_pipe_that_pickles_and_ignores_thinc_averages(uni_nlp):
    import pickle

    from spacy.pipeline import TrainablePipe

    pipe = uni_nlp.get_pipe("gliner_ner")
    assert isinstance(pipe, TrainablePipe) and pipe.is_trainable
    texts = crossner_sentences("politics", 4)
    before = [spans_of(d) for d in uni_nlp.pipe(texts)]
    with uni_nlp.use_params({}):  # what spacy train does when the optimizer keeps averages
        assert_same_spans([spans_of(d) for d in uni_nlp.pipe(texts)], before)
    copy = pickle.loads(pickle.dumps(uni_nlp))  # what nlp.pipe(n_process=2) does with spawned workers
    assert copy.get_pipe("gliner_ner").cfg == pipe.cfg
    assert_same_spans([spans_of(d) for d in copy.pipe(texts)], before)


def test_serialization_round_trip(bi_nlp, tmp_path, monkeypatch):
    texts = crossner_sentences("literature", 5)
    before = [spans_of(d) for d in bi_nlp.pipe(texts)]
    bi_nlp.to_disk(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "gliner_ner" / "label_cache" / "vectors.npy").exists()
    loaded = spacy.load(tmp_path / "pipe")
    extractor = loaded.get_pipe("gliner_ner").extractor
    # The saved label cache is used: the label encoder must not run again.
    monkeypatch.setattr(extractor, "encode_label_texts", lambda texts: pytest.fail("label vectors recomputed"))
    assert_same_spans([spans_of(d) for d in loaded.pipe(texts)], before)
    component = spacy.blank("en").add_pipe("gliner_ner", config={"model": str(tmp_path / "pipe" / "gliner_ner" / "checkpoint"), "labels": ["x"]})
    component.from_bytes(bi_nlp.get_pipe("gliner_ner").to_bytes())
    assert component.labels == tuple(LABELS)


def test_saved_checkpoint_loads_in_reference_package(uni_nlp, tmp_path):
    from gliner import GLiNER

    uni_nlp.get_pipe("gliner_ner").to_disk(tmp_path / "ner")
    reference = GLiNER.from_pretrained(str(tmp_path / "ner" / "checkpoint"), load_tokenizer=True)
    text = crossner_sentences("politics", 1)[0]
    found = reference.predict_entities(" ".join(split_words(text)), LABELS, threshold=0.5)
    doc = uni_nlp(" ".join(split_words(text)))
    assert found, "the comparison must cover real predictions"
    assert sorted((e["text"], e["label"]) for e in found) == sorted((e.text, e.label_) for e in doc.ents)


def test_bi_encoder_label_vectors_are_computed_once(checkpoints):
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("bi_sharp")), "labels": LABELS})
    extractor = ner.extractor
    calls = []
    original = extractor.model.label_encoder.forward
    extractor.model.label_encoder.forward = lambda *a, **k: calls.append(a[0].shape[0]) or original(*a, **k)
    list(nlp.pipe(crossner_sentences("music", 12), batch_size=3))
    assert calls == [len(LABELS)], "one label-encoder pass for the whole label set, none per document"
    ner.add_label("band", "music band")
    assert calls == [len(LABELS), 1], "add_label encodes only the new label"
    doc = nlp(crossner_sentences("music", 1)[0])
    assert calls == [len(LABELS), 1]
    assert "band" in ner.labels and len(extractor.label_cache) == len(LABELS) + 1
    assert doc.spans["sc"] is not None


def long_document_words(count):
    words = []
    for domain in ("politics", "science", "music", "literature", "AI"):
        for sentence in crossner_sentences(domain, 700):
            words.extend(split_words(sentence))
            if len(words) >= count:
                return words[:count]
    return words


def test_add_labels_in_bulk_saved_with_the_component_not_the_config(checkpoints, tmp_path, monkeypatch):
    from inference.test_label_retrieval import real_label_names

    nlp = spacy.blank("en")
    ner = nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("bi_sharp")), "labels": LABELS[:2]})
    many = real_label_names(3000)
    assert ner.extractor.label_cache is not None  # model loaded: new labels get their vectors now
    assert ner.add_labels(many, progress=False) == len(set(many) - set(LABELS[:2]))
    with pytest.raises(ValueError, match="is given twice"):
        ner.add_labels(["x label", "x label"])
    assert ner.add_labels(many[:10]) == 0, "labels already there are skipped"
    assert len(ner.labels) == len(set(many) | set(LABELS[:2]))
    assert all(text in ner.extractor.label_cache for text in set(many) - set(LABELS[:2]))
    with pytest.raises(ValueError, match="subwords but at most"):
        ner.add_labels(["word " * 600])
    texts = crossner_sentences("music", 4)
    before = [spans_of(d) for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "pipe")
    assert len((tmp_path / "pipe" / "config.cfg").read_text()) < 5000, "the labels are not in config.cfg"
    loaded = spacy.load(tmp_path / "pipe")
    pipe = loaded.get_pipe("gliner_ner")
    assert pipe.labels == ner.labels
    monkeypatch.setattr(pipe.extractor, "encode_label_texts", lambda texts: pytest.fail("label vectors recomputed"))
    assert_same_spans([spans_of(d) for d in loaded.pipe(texts)], before)


def test_long_document_finds_entities_to_the_end(uni_nlp):
    words = long_document_words(20_000)
    assert len(words) == 20_000
    doc = uni_nlp(Doc(uni_nlp.vocab, words=words))
    starts = [s.start for s in doc.spans["sc"]]
    assert max(starts) > 19_500, "entities are found up to the end of a 20,000-word document"
    keys = [(s.start, s.end, s.label_) for s in doc.spans["sc"]]
    assert len(keys) == len(set(keys)), "an entity on a window border is reported once"


def test_window_merge_equals_reference_run_per_window(checkpoints, reference_models, monkeypatch):
    """Small windows on a 300-word text: each window scored by the reference, merged by ownership.

    The reference's own greedy step is switched off so it returns every candidate above the
    threshold; ownership and one greedy pass over the whole document must give our output.
    """
    from spacy_gliner.inference.decoding import DecodedSpan, greedy_select
    from spacy_gliner.inference.windows import plan_windows

    words = long_document_words(300)
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "gliner_ner",
        config={"model": str(checkpoints("uni_sharp")), "labels": LABELS, "max_window_words": 60, "window_overlap": 24},
    )
    doc = nlp(Doc(nlp.vocab, words=words))
    windows = plan_windows(0, [1] * len(words), 60, 10_000, 24)
    assert len(windows) > 4
    reference = reference_models("uni_sharp")
    monkeypatch.setattr(reference.decoder, "greedy_search", lambda spans, *args, **kwargs: spans)
    candidates = []
    for window in windows:
        text = " ".join(words[window.start : window.end])
        spans = reference.inference([text], LABELS, flat_ner=False, threshold=0.5, multi_label=True)[0]
        offsets = {}
        position = 0
        for i, word in enumerate(words[window.start : window.end]):
            offsets[position] = i
            position += len(word) + 1
        for e in spans:
            start = window.start + offsets[e["start"]]
            end = start + len(split_words(e["text"]))
            if window.own_start <= start < window.own_end:
                candidates.append(DecodedSpan(start, end, LABELS.index(e["label"]), e["score"]))
    expected = greedy_select(candidates, nested=False, multi_label=False)
    assert [(s.start, s.end, LABELS[s.label]) for s in expected] == [(s.start, s.end, s.label_) for s in doc.spans["sc"]]


def test_labels_beyond_one_prompt_are_split_into_groups(checkpoints, monkeypatch):
    """300 real labels do not fit beside the text in a 512-subword window; every group is scored.

    Greedy selection is switched off so the raw candidates of each group can be compared.
    """
    import spacy_gliner.inference.entities as extraction
    from spacy_gliner.inference.entities import DecodeSettings

    monkeypatch.setattr(extraction, "greedy_select", lambda spans, nested, multi_label: sorted(spans, key=lambda s: (s.start, s.end)))

    names = []
    for label_file in sorted((DATA / "gner_ner_bundle").glob("*/label.txt")):
        names.extend(line.strip().lower() for line in label_file.read_text().splitlines() if line.strip())
    names = list(dict.fromkeys(names))
    names += [w.lower() for w in long_document_words(3000) if w.isalpha() and len(w) > 3]
    labels = list(dict.fromkeys(names))[:300]
    nlp = spacy.blank("en")
    ner = nlp.add_pipe(
        "gliner_ner", config={"model": str(checkpoints("uni_sharp")), "labels": labels, "nested": True, "threshold": 0.3}
    )
    extractor = ner.extractor
    groups = extractor.label_groups(labels)
    assert len(groups) > 1 and sorted(i for g in groups for i in g) == list(range(300))
    words = split_words(" ".join(crossner_sentences("science", 3)))
    doc = nlp(Doc(nlp.vocab, words=words))
    found = {(s.start, s.end, s.label_) for s in doc.spans["sc"]}
    groups_with_spans = 0
    for group in groups:
        # Each group scores exactly as a run with only that group's labels.
        names = [labels[i] for i in group]
        alone = extractor.extract([words], names, DecodeSettings(0.3, nested=True))[0]
        expected = {(s.start, s.end, names[s.label]) for s in alone}
        assert {s for s in found if s[2] in set(names)} == expected
        groups_with_spans += bool(expected)
    assert groups_with_spans >= 2, "labels beyond the first prompt are scored too"


@pytest.mark.parametrize(
    "text",
    ["", "   \n\t ", "... !!! ?? --", "🙂🙂 🚀 ✨", "北京是中国的首都。", "مرحبا بكم في القاهرة", "Zürich’s ﬁnest — café"],
)
def test_unusual_text_gives_aligned_output(uni_nlp, text):
    doc = uni_nlp(text)
    assert len(doc.spans["sc"].attrs["scores"]) == len(doc.spans["sc"])
    for span in doc.spans["sc"]:
        assert 0 <= span.start < span.end <= len(doc)
    if not text.strip():
        assert len(doc.spans["sc"]) == 0 and len(doc.ents) == 0


@pytest.mark.parametrize(
    "labels, message",
    [
        (["person", "person"], "given twice"),
        ({"person": ""}, "empty label"),
        (["  "], "empty label"),
    ],
)
def test_bad_labels_fail_at_add_pipe(checkpoints, labels, message):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=message):
        nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_markerV0")), "labels": labels})


def test_non_string_labels_fail_at_add_pipe(checkpoints):
    nlp = spacy.blank("en")
    with pytest.raises(Exception, match="labels"):
        nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_markerV0")), "labels": [3, 4]})


@pytest.mark.parametrize("family", ["uni_markerV0", "bi_span"])
def test_label_longer_than_encoder_window_fails_at_add_pipe(checkpoints, family):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="subwords but at most"):
        nlp.add_pipe("gliner_ner", config={"model": str(checkpoints(family)), "labels": ["person", "word " * 600]})


def test_empty_label_list_is_a_clear_error_at_first_use(checkpoints):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_markerV0")), "labels": []})
    with pytest.raises(ValueError, match="no labels"):
        nlp("Some text.")


def test_hub_id_without_network_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": "nonexistent-org/gliner-never-published", "labels": ["person"]})
    with pytest.raises(ValueError, match="huggingface-cli download"):
        nlp("Some text.")


def test_missing_directory_is_a_clear_error():
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": "./no/such/checkpoint", "labels": ["person"]})
    with pytest.raises(ValueError, match="does not exist"):
        nlp("Some text.")


def test_bad_settings_fail_at_add_pipe(checkpoints):
    for config, message in [({"threshold": 1.5}, "threshold"), ({"batch_size": 0}, "batch_size"), ({"label_cache_dtype": "int8"}, "label_cache_dtype")]:
        nlp = spacy.blank("en")
        with pytest.raises(ValueError, match=message):
            nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_markerV0")), "labels": LABELS, **config})


def test_scorer_reports_ents_and_span_group(uni_nlp):
    from spacy.training import Example

    text = crossner_sentences("politics", 1)[0]
    predicted = uni_nlp(text)
    reference = uni_nlp.make_doc(text)
    reference.ents = list(predicted.ents)[:1]
    reference.spans["sc"] = SpanGroup(reference, name="sc", spans=[Span(reference, e.start, e.end, e.label_) for e in predicted.ents][:1])
    scores = uni_nlp.get_pipe("gliner_ner").score([Example(predicted, reference)])
    assert scores["ents_r"] == 1.0 and 0 < scores["ents_p"] < 1.0
    assert "spans_sc_f" in scores and scores["spans_sc_r"] == 1.0
    assert set(scores["ents_per_type"]) >= {reference.ents[0].label_}


def test_saved_fields_honour_exclude(bi_nlp, tmp_path):
    """spaCy's convention: ``cfg``, ``checkpoint`` and ``label_cache`` are named fields that
    ``exclude`` leaves out, on disk and in bytes."""
    component = bi_nlp.get_pipe("gliner_ner")
    component.to_disk(tmp_path / "no_cache", exclude=["label_cache"])
    assert {p.name for p in (tmp_path / "no_cache").iterdir()} == {"cfg", "checkpoint"}
    component.to_disk(tmp_path / "all")
    assert {p.name for p in (tmp_path / "all").iterdir()} == {"cfg", "checkpoint", "label_cache"}
    other = spacy.blank("en").add_pipe("gliner_ner", config={"model": str(tmp_path / "all" / "checkpoint"), "labels": ["x"]})
    other.from_disk(tmp_path / "all", exclude=["cfg"])  # keeps its own labels, loads the saved model
    assert other.labels == ("x",) and other.extractor.config.bi_encoder
    other.from_bytes(component.to_bytes(exclude=["cfg"]), exclude=["cfg"])
    assert other.labels == ("x",)
    other.from_bytes(component.to_bytes())
    assert other.labels == tuple(LABELS)
    texts = crossner_sentences("literature", 2)
    assert_same_spans([spans_of(other(bi_nlp.make_doc(t))) for t in texts], [spans_of(d) for d in bi_nlp.pipe(texts)])


def test_label_data_initializes_labels_as_spacy_init_labels_does(checkpoints, tmp_path):
    """``spacy init labels`` writes each pipe's ``label_data``; ``spacy.read_labels.v1`` gives it
    back to ``initialize(labels=...)``."""
    import srsly

    descriptions = {label: f"a {label} mentioned in the text" for label in LABELS[:3]}
    source = spacy.blank("en")
    source.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_sharp")), "labels": descriptions})
    assert source.get_pipe("gliner_ner").label_data == descriptions
    plain = spacy.blank("en").add_pipe("gliner_ner", config={"model": str(checkpoints("uni_sharp")), "labels": LABELS})
    assert plain.label_data == list(LABELS)
    srsly.write_json(tmp_path / "gliner_ner.json", source.get_pipe("gliner_ner").label_data)
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_sharp")), "labels": ["x"]})
    nlp.config["initialize"]["components"]["gliner_ner"] = {
        "labels": {"@readers": "spacy.read_labels.v1", "path": str(tmp_path / "gliner_ner.json")}}
    text = crossner_sentences("politics", 1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # initialize without gold data reads one empty doc
        nlp.initialize()
    component = nlp.get_pipe("gliner_ner")
    assert component.labels == tuple(descriptions) and component.label_descriptions == descriptions
    assert [spans_of(nlp(text))] == [spans_of(source(text))]
