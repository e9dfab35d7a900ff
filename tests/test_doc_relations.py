"""The relation store on Doc: views, validation, and survival across serialisation."""

import importlib
import warnings

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span

from spacy_gliner import doc_relations as R
from spacy_gliner.doc_relations import Relation, get_relation_tuples, set_relations


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def _doc(nlp):
    doc = Doc(nlp.vocab, words="Anna Smith works for Acme Corp in Berlin .".split())
    doc.ents = [
        Span(doc, 0, 2, label="person"),
        Span(doc, 4, 6, label="organization"),
        Span(doc, 7, 8, label="location"),
    ]
    return doc


def test_views_are_derived_from_one_store(nlp):
    doc = _doc(nlp)
    assert doc._.gliner_relations is None
    assert doc._.relations == [] and doc._.rel == {}
    set_relations(
        doc,
        [
            (4, 6, 7, 8, "located in", 0.6),
            Relation(doc[0:2], doc[4:6], "works for", 0.9),
        ],
    )
    rels = doc._.relations
    # document order: by head start, then tail start
    assert [(r.head.text, r.tail.text, r.label) for r in rels] == [
        ("Anna Smith", "Acme Corp", "works for"),
        ("Acme Corp", "Berlin", "located in"),
    ]
    assert rels[0].head.label_ == "person" and rels[1].tail.label_ == "location"
    assert rels[0].score == pytest.approx(0.9)
    assert doc._.rel == {(0, 4): {"works for": 0.9}, (4, 7): {"located in": 0.6}}
    # the store itself is plain data: token offsets, label, score, then the character offsets
    # that anchor each argument through retokenization
    assert doc._.gliner_relations == [
        [0, 2, 4, 6, "works for", 0.9, 0, 10, 21, 30],
        [4, 6, 7, 8, "located in", 0.6, 21, 30, 34, 40],
    ]


def test_duplicates_keep_best_score_and_rel_merges_labels(nlp):
    doc = _doc(nlp)
    set_relations(
        doc,
        [
            (0, 2, 4, 6, "works for", 0.3),
            (0, 2, 4, 6, "works for", 0.8),
            (0, 2, 4, 6, "founded", 0.5),
            (0, 1, 4, 5, "founded", 0.7),  # same (head.start, tail.start) key, other ends
        ],
    )
    assert len(get_relation_tuples(doc)) == 3
    assert doc._.rel == {(0, 4): {"works for": 0.8, "founded": 0.7}}
    R.add_relations(doc, [(7, 8, 4, 6, "hosts", 0.4)])
    assert [r.label for r in doc._.relations] == ["founded", "founded", "works for", "hosts"]


def test_validation(nlp):
    doc = _doc(nlp)
    with pytest.raises(ValueError):
        set_relations(doc, [(0, 2, 8, 10, "x", 1.0)])  # beyond the 9 tokens
    with pytest.raises(ValueError):
        set_relations(doc, [(2, 2, 4, 6, "x", 1.0)])  # empty head
    with pytest.raises(ValueError):
        set_relations(doc, [(0, 2, 4, 6, "", 1.0)])
    other = _doc(nlp)
    with pytest.raises(ValueError):
        set_relations(doc, [Relation(other[0:2], doc[4:6], "x")])
    set_relations(doc, [(0, 2, 4, 6, "works for")])  # 5-tuple: score 1.0
    assert doc._.relations[0].score == 1.0


def test_to_bytes_round_trip(nlp):
    doc = _doc(nlp)
    set_relations(doc, [(0, 2, 4, 6, "works for", 0.9), (4, 6, 7, 8, "located in", 0.6)])
    restored = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert get_relation_tuples(restored) == get_relation_tuples(doc)
    assert restored._.rel == doc._.rel
    assert [r.head.label_ for r in restored._.relations] == ["person", "organization"]


def test_docbin_with_user_data(nlp):
    docs = []
    for i in range(3):
        doc = _doc(nlp)
        set_relations(doc, [(0, 2, 4, 6, f"rel{i}", 0.5 + i / 10)])
        docs.append(doc)
    data = DocBin(docs=docs, store_user_data=True).to_bytes()
    back = list(DocBin().from_bytes(data).get_docs(spacy.blank("en").vocab))
    assert [d._.rel for d in back] == [{(0, 4): {"rel0": 0.5}}, {(0, 4): {"rel1": 0.6}}, {(0, 4): {"rel2": 0.7}}]
    # without user data the relations are (expectedly) gone: the test above is not vacuous
    lost = list(DocBin(docs=docs, store_user_data=False).get_docs(nlp.vocab))
    assert lost[0]._.relations == []


@Language.component("test_relation_setter")
def _relation_setter(doc):
    # relate every token pair (i, i + 1) with a score that depends on the doc
    set_relations(doc, [(i, i + 1, i + 1, i + 2, "next", 1.0 / (i + 1)) for i in range(len(doc) - 1)])
    return doc


def test_pipe_with_two_processes():
    nlp = spacy.blank("en")
    nlp.add_pipe("test_relation_setter")
    texts = ["a b c", "one two", "x y z w", "solo"] * 3
    docs = list(nlp.pipe(texts, n_process=2, batch_size=2))
    assert len(docs) == len(texts)
    for text, doc in zip(texts, docs):
        n = len(text.split())
        assert [(r.head.start, r.tail.start, r.label) for r in doc._.relations] == [
            (i, i + 1, "next") for i in range(n - 1)
        ]
        assert [r.score for r in doc._.relations] == pytest.approx([1.0 / (i + 1) for i in range(n - 1)])


def test_registration_is_idempotent_and_respects_foreign_rel():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        R.register_extensions()
        importlib.reload(R)  # new getter objects, same module: re-registered quietly
    ours = Doc.get_extension("rel")
    Doc.remove_extension("rel")
    try:
        Doc.set_extension("rel", default={})  # the spaCy tutorial's own extension
        with pytest.warns(UserWarning, match="already registered"):
            R.register_extensions()
        assert Doc.get_extension("rel")[0] == {}  # left alone
    finally:
        Doc.remove_extension("rel")
        Doc.set_extension("rel", getter=ours[2])


# -- retokenization: relations follow the characters, never stale token offsets ---------------------


def _triples(doc):
    return [(r.head.text, r.label, r.tail.text) for r in doc._.relations]


def test_relations_follow_a_manual_merge_and_split(nlp):
    doc = _doc(nlp)
    set_relations(doc, [(0, 2, 4, 6, "works for", 0.9), (4, 6, 7, 8, "located in", 0.6)])
    before = _triples(doc)
    with doc.retokenize() as retokenizer:
        retokenizer.merge(doc[0:2])  # the doc gets shorter: 8 tokens, old offsets 7:8 now past "in"
        retokenizer.merge(doc[4:6])
    assert len(doc) == 7
    assert _triples(doc) == before
    assert doc._.rel == {(0, 3): {"works for": 0.9}, (3, 5): {"located in": 0.6}}
    assert [r.head.label_ for r in doc._.relations] == ["person", "organization"]
    with doc.retokenize() as retokenizer:
        retokenizer.split(doc[5], ["Ber", "lin"], heads=[(doc[5], 1), doc[4]])  # the doc grows again
    assert _triples(doc) == before
    assert [(r.tail.start, r.tail.end) for r in doc._.relations] == [(3, 4), (5, 7)]


def test_an_argument_merged_into_a_larger_token_becomes_that_token(nlp):
    doc = _doc(nlp)
    set_relations(doc, [(1, 2, 7, 8, "lives in", 0.5)])  # "Smith" -> "Berlin"
    with doc.retokenize() as retokenizer:
        retokenizer.merge(doc[0:3])  # "Anna Smith works"
    assert _triples(doc) == [("Anna Smith works", "lives in", "Berlin")]


def test_relations_survive_merge_entities_and_noun_chunks_then_bytes(nlp):
    from spacy.pipeline.functions import merge_entities

    doc = _doc(nlp)
    set_relations(doc, [(0, 2, 4, 6, "works for", 0.9), (4, 6, 7, 8, "located in", 0.6)])
    doc = merge_entities(doc)
    assert _triples(doc) == [("Anna Smith", "works for", "Acme Corp"), ("Acme Corp", "located in", "Berlin")]
    restored = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert _triples(restored) == _triples(doc)
    back = list(DocBin(docs=[doc], store_user_data=True).get_docs(nlp.vocab))[0]
    assert _triples(back) == _triples(doc) and back._.rel == {(0, 3): {"works for": 0.9}, (3, 5): {"located in": 0.6}}


def test_legacy_token_only_entries_are_read_and_refused_once_stale(nlp):
    doc = _doc(nlp)
    doc._.gliner_relations = [[4, 6, 7, 8, "located in", 0.6]]  # written before characters were stored
    assert _triples(doc) == [("Acme Corp", "located in", "Berlin")]
    with doc.retokenize() as retokenizer:
        retokenizer.merge(doc[0:3])
    with pytest.raises(R.StaleRelationsError, match="token offsets only.*retokenized"):
        doc._.relations


def test_relations_of_another_text_are_refused(nlp):
    doc = _doc(nlp)
    set_relations(doc, [(0, 2, 7, 8, "lives in", 0.5)])
    short = Doc(nlp.vocab, words=["Anna", "Smith"])
    short._.gliner_relations = doc._.gliner_relations
    with pytest.raises(R.StaleRelationsError, match="not inside this Doc's text"):
        short._.relations


def test_a_stale_span_group_does_not_lend_its_labels(nlp):
    """spaCy leaves span groups unrenumbered by a merge; labels are read through their characters."""
    doc = Doc(nlp.vocab, words="Anna Smith works for Acme Corp in Berlin .".split())
    doc.spans["sc"] = [Span(doc, 0, 2, label="person"), Span(doc, 4, 6, label="org"), Span(doc, 7, 8, label="loc")]
    set_relations(doc, [(0, 2, 4, 6, "works for", 0.9), (4, 6, 7, 8, "located in", 0.6)])
    with doc.retokenize() as retokenizer:
        retokenizer.merge(doc[0:2])
        retokenizer.merge(doc[2:4])  # "works for": the group's "Berlin" at 7:8 now lies past the end
    labels = [(r.head.text, r.head.label_, r.tail.text, r.tail.label_) for r in doc._.relations]
    assert labels == [("Anna Smith", "person", "Acme Corp", "org"), ("Acme Corp", "org", "Berlin", "")]
