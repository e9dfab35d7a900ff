"""Property-based tests of the gliner components on hostile input and real pipeline shapes.

Hypothesis generates text (every Unicode category hypothesis draws from, control characters and
combining marks included, whitespace runs, very long tokens, empty docs), label sets (sizes,
characters, duplicates, prompt and special tokens), settings and pipeline shapes. The invariants:

* nothing raises but our documented errors (``ValueError``, ``CheckpointError`` is one) with our
  messages, and a refused label set leaves the component as it was;
* spans align with tokens, lie inside the doc and carry the component's labels;
* what was on the doc before (EntityRuler ents, a user's span group under another key,
  ``user_data``) is kept unless ``overwrite_ents`` asks otherwise;
* the output does not depend on the batch size and survives ``DocBin``/``to_bytes`` round trips
  and a re-run;
* relations point at spans that are in the doc, also after ``merge_entities``.

Models are built once per module; pipelines are cached per setting and labels changed with
``initialize(labels=...)``, because building a pipeline per example would cost seconds each.
The number of examples scales with the hypothesis profile (``HYPOTHESIS_PROFILE=deep``, see
conftest.py).
"""
from __future__ import annotations

import re

import pytest
import spacy
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc, DocBin, Span, SpanGroup

import spacy_gliner.components.linker  # noqa: F401  (registers the factories)
import spacy_gliner.components.ner  # noqa: F401
import spacy_gliner.components.relex  # noqa: F401
from components.test_linker import ENTITIES, write_kb
from components.test_linker import model_dir as linker_model_dir  # noqa: F401  (fixture)
from components.test_pipeline_guarantees import RELATIONS, RELEX_SETTINGS
from components.test_relex import ENTITY_LABELS, relex_models  # noqa: F401  (fixture)

pytestmark = pytest.mark.filterwarnings("ignore:gliner_relex", "ignore:.*cannot tell apart")

SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


def examples(n: int) -> int:
    """``n`` examples under the CI profile (max_examples 100), proportionally more under deeper ones."""
    return max(1, n * settings.default.max_examples // 100)


# Messages of the errors a component may raise on bad labels: anything else is a bug.
DOCUMENTED = re.compile(
    r"labels|label .* contains|subwords but at most|empty label|given twice|special token|prompt token"
)

# -- strategies -------------------------------------------------------------------------------------

WORDS = ["Barack", "Obama", "visited", "Paris", "and", "the", "European", "Union", "in", "2009", ".", ","]
HOSTILE = st.characters(codec="utf-8")  # every category but surrogates: Cc, Cf, Mn, Zs, Co, So ...
PIECE = st.one_of(
    st.sampled_from(WORDS),
    st.text(HOSTILE, min_size=1, max_size=6),
    st.sampled_from(["\u0301", "e\u0301", "\u200b", "\ufeff", "\x00", "\x1b[0m", "\u202e", "\t", "\r\n", "\u3000", "🇫🇷", "👩‍👩‍👧"]),
    st.integers(60, 400).map(lambda n: "x" * n),  # one token longer than any window
    st.sampled_from(["<<ENT>>", "<<SEP>>", "[CLS]", "[SEP]", "[MASK]", "<<REL>>"]),
)
SEPARATOR = st.sampled_from([" ", " ", " ", "", "  ", "\n\n", " \t ", "\u00a0"])


@st.composite
def texts(draw, max_pieces=24):
    pieces = draw(st.lists(PIECE, max_size=max_pieces))
    return "".join(piece + draw(SEPARATOR) for piece in pieces)


CLEAN_LABEL = st.one_of(
    st.sampled_from(["person", "city", "organisation", "date", "country", "political party", "Person", "PERSON"]),
    st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Mn"]), min_size=1, max_size=12),
)
HOSTILE_LABEL = st.one_of(
    st.sampled_from([" person ", "<<ENT>>", "a [SEP] b", "[CLS]", "x <<SEP>>", "\u0301", "label\x00", "\n", "", "word " * 600]),
    st.text(HOSTILE, min_size=0, max_size=12),
)
# Mostly label sets a user could mean (so the model runs), now and then a hostile one (so the
# refusal path runs): hypothesis draws the branches of one_of about equally often.
label_sets = st.one_of(
    st.lists(CLEAN_LABEL, min_size=1, max_size=8, unique=True),
    st.lists(CLEAN_LABEL, min_size=1, max_size=8, unique=True),
    st.lists(st.one_of(CLEAN_LABEL, HOSTILE_LABEL), min_size=0, max_size=8),
)


def ner_settings():
    return st.fixed_dictionaries({
        "threshold": st.sampled_from([0.1, 0.5, 0.9]),
        "nested": st.booleans(),
        "multi_label": st.booleans(),
    })


# -- helpers ----------------------------------------------------------------------------------------


def check_spans(doc, spans, labels):
    for span in spans:
        assert span.doc is doc
        assert 0 <= span.start < span.end <= len(doc), (span.start, span.end, len(doc))
        assert span.start_char == doc[span.start].idx and span.end_char == doc[span.end - 1].idx + len(doc[span.end - 1])
        assert span.label_ in labels, (span.label_, labels)
        assert not all(token.is_space for token in span), "a span of whitespace only"


def snapshot(doc, keys=None):
    """Everything a component writes, comparable between docs."""
    keys = doc.spans.keys() if keys is None else keys
    groups = {k: ([(s.start, s.end, s.label_) for s in doc.spans[k]], doc.spans[k].attrs.get("scores")) for k in keys}
    relations = [(r.head.start, r.head.end, r.tail.start, r.tail.end, r.label, round(r.score, 6)) for r in doc._.relations]
    return [(e.start, e.end, e.label_, e.kb_id_) for e in doc.ents], groups, relations


class Pipelines:
    """One pipeline per setting, built on first use (a build loads the model: seconds)."""

    def __init__(self, build):
        self.build, self.cache = build, {}

    def __call__(self, **setting):
        key = tuple(sorted(setting.items()))
        if key not in self.cache:
            self.cache[key] = self.build(**setting)
        return self.cache[key]


@pytest.fixture(scope="module")
def ner_pipelines(checkpoints):
    def build(**setting):
        nlp = spacy.blank("en")
        nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_sharp")), "labels": ["person", "city"], **setting})
        return nlp

    return Pipelines(build)


def set_labels(pipe, labels):
    """Labels through the public API; a refused set must be our documented error and change nothing."""
    before = list(pipe.labels)
    try:
        pipe.initialize(labels=labels)
    except ValueError as err:
        assert DOCUMENTED.search(str(err)), f"undocumented error for labels {labels!r}: {err}"
        assert list(pipe.labels) == before
        return False
    return True


# -- gliner_ner ---------------------------------------------------------------------------------------


@settings(max_examples=examples(25), deadline=None, suppress_health_check=SUPPRESS)
@given(text=texts(), labels=label_sets, setting=ner_settings())
def test_ner_on_any_text_and_labels(ner_pipelines, text, labels, setting):
    nlp = ner_pipelines(**setting)
    pipe = nlp.get_pipe("gliner_ner")
    if not set_labels(pipe, labels):
        event("labels refused")
        return
    doc = nlp(text)
    assert doc.text == text
    event(f"spans found: {min(len(doc.spans['sc']), 3)}{'+' if len(doc.spans['sc']) >= 3 else ''}")
    check_spans(doc, doc.spans["sc"], set(pipe.labels))
    check_spans(doc, doc.ents, set(pipe.labels))
    scores = doc.spans["sc"].attrs["scores"]
    assert len(scores) == len(doc.spans["sc"]) and all(setting["threshold"] <= s <= 1.0 for s in scores)
    if not setting["nested"]:
        ordered = sorted((s.start, s.end) for s in doc.spans["sc"])
        assert all(a[1] <= b[0] or a == b for a, b in zip(ordered, ordered[1:])), "flat output overlaps"
    if not setting["multi_label"]:
        bounds = [(s.start, s.end) for s in doc.spans["sc"]]
        assert len(bounds) == len(set(bounds)), "one label per span unless multi_label"
    # A re-run is idempotent, and the output survives bytes and DocBin round trips.
    first = snapshot(doc)
    assert snapshot(nlp(doc)) == first
    assert snapshot(Doc(nlp.vocab).from_bytes(doc.to_bytes())) == first
    assert snapshot(next(DocBin(docs=[doc], store_user_data=True).get_docs(nlp.vocab))) == first


@settings(max_examples=examples(10), deadline=None, suppress_health_check=SUPPRESS)
@given(batch=st.lists(texts(max_pieces=12), min_size=1, max_size=5), batch_size=st.integers(1, 4))
def test_ner_output_does_not_depend_on_the_batch_size(ner_pipelines, batch, batch_size):
    nlp = ner_pipelines(threshold=0.5, nested=False, multi_label=False)
    nlp.get_pipe("gliner_ner").initialize(labels=["person", "city", "organisation"])
    one_by_one = [snapshot(nlp(text)) for text in batch]
    together = [snapshot(doc) for doc in nlp.pipe(batch, batch_size=batch_size)]
    assert [s[:1] + s[2:] for s in together] == [s[:1] + s[2:] for s in one_by_one]
    for (_, ours, _), (_, alone, _) in zip(together, one_by_one):
        assert ours["sc"][0] == alone["sc"][0]
        assert ours["sc"][1] == pytest.approx(alone["sc"][1], abs=1e-4)


@st.composite
def ruler_patterns(draw):
    words = draw(st.lists(st.sampled_from(WORDS[:4] + ["Union"]), min_size=1, max_size=3, unique=True))
    return [{"label": "RULE", "pattern": word} for word in words]


@settings(max_examples=examples(12), deadline=None, suppress_health_check=SUPPRESS)
@given(text=texts(max_pieces=16), patterns=ruler_patterns(), overwrite=st.booleans())
def test_existing_annotations_are_kept_unless_overwriting_is_asked(checkpoints, ner_pipelines, text, patterns, overwrite):
    # A pipeline of its own: an EntityRuler in front and overwrite_ents as drawn.
    nlp = ner_pipelines(threshold=0.5, nested=False, multi_label=False, overwrite_ents=overwrite, spans_key="gliner")
    pipe = nlp.get_pipe("gliner_ner")
    pipe.initialize(labels=["person", "city"])
    ruler = spacy.blank("en")
    ruler.add_pipe("entity_ruler").add_patterns(patterns)
    doc = ruler(text)
    rule_ents = [(e.start, e.end, e.label_) for e in doc.ents]
    users = SpanGroup(doc, name="mine", spans=[Span(doc, 0, 1, label="USER")] if len(doc) else [])
    users.attrs["owner"] = "alice"
    doc.spans["mine"] = users
    doc.user_data["note"] = {"kept": [1, 2, 3]}
    doc = nlp(doc)
    assert [(s.start, s.end, s.label_) for s in doc.spans["mine"]] == ([(0, 1, "USER")] if len(doc) else [])
    assert doc.spans["mine"].attrs["owner"] == "alice" and doc.user_data["note"] == {"kept": [1, 2, 3]}
    ents = [(e.start, e.end, e.label_) for e in doc.ents]
    if not overwrite:
        assert set(rule_ents) <= set(ents), "EntityRuler entities were dropped"
    check_spans(doc, [e for e in doc.ents if e.label_ != "RULE"], {"person", "city"})


# -- gliner_relex -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def relex_nlp(relex_models):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_relex", config={"model": str(relex_models["mlp"][1]), "labels": ENTITY_LABELS,
                                         "relations": RELATIONS, **RELEX_SETTINGS})
    return nlp


def check_relations(doc):
    for relation in doc._.relations:
        for argument in (relation.head, relation.tail):
            assert argument.doc is doc and 0 <= argument.start < argument.end <= len(doc)
        assert relation.label in RELATIONS


CONLL_LIKE = ["John Smith", "works", "for", "Acme Corp", "in", "New York", ".", "Mary", "was", "born", "Berlin", ","]


@st.composite
def relex_texts(draw):
    pieces = draw(st.lists(st.one_of(st.sampled_from(CONLL_LIKE), PIECE), max_size=20))
    return "".join(piece + draw(SEPARATOR) for piece in pieces)


@settings(max_examples=examples(12), deadline=None, suppress_health_check=SUPPRESS)
@given(text=relex_texts())
@example(text="John Smith John Smith John Smith John Smith<<REL>>John Smith ")  # once an IndexError
def test_relex_relations_point_at_spans_in_the_doc_through_merges_and_round_trips(relex_nlp, text):
    doc = relex_nlp(text)
    event(f"relations found: {bool(doc._.relations)}")
    check_relations(doc)
    entity_spans = {(s.start, s.end) for s in doc.spans["sc"]}
    for relation in doc._.relations:
        assert (relation.head.start, relation.head.end) in entity_spans
        assert (relation.tail.start, relation.tail.end) in entity_spans
    first = snapshot(doc)
    assert snapshot(relex_nlp(doc)) == first
    assert snapshot(Doc(relex_nlp.vocab).from_bytes(doc.to_bytes())) == first
    assert snapshot(next(DocBin(docs=[doc], store_user_data=True).get_docs(relex_nlp.vocab))) == first
    # merge_entities renumbers tokens: each relation still covers the same characters.
    chars = [((r.head.start_char, r.head.end_char), r.label, (r.tail.start_char, r.tail.end_char)) for r in doc._.relations]
    from spacy.pipeline.functions import merge_entities

    doc = merge_entities(doc)
    # (doc.spans is not read from here on: spaCy does not renumber span groups on a merge.)
    check_relations(doc)
    after = [((r.head.start_char, r.head.end_char), r.label, (r.tail.start_char, r.tail.end_char)) for r in doc._.relations]
    assert after == chars


# -- gliner_linker ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linker_nlp(linker_model_dir, tmp_path_factory):
    kb = write_kb(tmp_path_factory.mktemp("property_kb") / "kb.jsonl", ENTITIES)
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns(
        [{"label": "ENT", "pattern": word} for word in ["Paris", "France", "Obama", "Apple", "x" * 80]]
        + [{"label": "ENT", "pattern": [{"IS_ASCII": False}]}]  # hostile single tokens become mentions too
    )
    nlp.add_pipe("gliner_linker", config={"model": str(linker_model_dir), "kb": str(kb), "threshold": 0.0})
    return nlp


@settings(max_examples=examples(10), deadline=None, suppress_health_check=SUPPRESS)
@given(text=st.lists(st.one_of(st.sampled_from(["Paris", "France", "Obama", "Apple", "x" * 80]), PIECE), max_size=16)
       .map(" ".join))
def test_linker_links_every_mention_to_the_kb_or_nil(linker_nlp, text):
    from spacy_gliner.components.linker import NIL

    doc = linker_nlp(text)
    ids = {e["id"] for e in ENTITIES}
    for ent in doc.ents:
        assert ent.kb_id_ in ids | {NIL}, ent.kb_id_
        assert ent.label_ == "ENT"
        candidates = ent._.gliner_candidates
        assert all(eid in ids for eid, _ in candidates) and all(0.0 <= s <= 1.0 for _, s in candidates)
    assert snapshot(Doc(linker_nlp.vocab).from_bytes(doc.to_bytes())) == snapshot(doc)
    # Candidates stay with their mention when merge_entities renumbers the tokens.
    from spacy.pipeline.functions import merge_entities

    before = [(e.start_char, e.end_char, e.kb_id_, e._.gliner_candidates) for e in doc.ents]
    assert [(e.start_char, e.end_char, e.kb_id_, e._.gliner_candidates) for e in merge_entities(doc).ents] == before
