"""Readers for the linking corpora in shared/data: counts match each SOURCE.md."""
from __future__ import annotations

import pytest

from spacy_gliner.kb.linking_benchmarks import (
    BENCHMARKS,
    entities_from_documents,
    load_benchmark,
    read_bio_entities,
)
from spacy_gliner.kb.entities import entity_text


@pytest.mark.parametrize(
    "name,docs,mentions,linked,distinct",
    [
        # docs / gold labels / labels with a QID / distinct QIDs, as in elevant_el_benchmarks/SOURCE.md
        ("kore50", 50, 144, 143, 126),
        ("msnbc", 20, 755, 755 - 89, None),
        ("reuters-128", 128, 880, 880 - 257, None),
        ("rss-500", 500, 1000, 1000 - 482, None),
        ("aida-conll-test", 231, 5616, 5616 - 1132, None),
        # tweeki_gold/SOURCE.md: 500 tweets, 864 mentions, 863 with a QID, 1 malformed link
        ("tweeki", 500, 864, 863, None),
        # aida_yago2_annotations: testb has 5,616 mentions; ZELDA's AIDA-B (all in-KB) has 4,485
        ("aida-yago2-testb", 231, 5616, 4485, None),
        ("zelda-aida-b", 231, 4485, 4485, 1537),
    ],
)
def test_reader_counts(data_dir, name, docs, mentions, linked, distinct):
    documents = load_benchmark(name, data_dir)
    all_mentions = [m for d in documents for m in d.mentions]
    linked_mentions = [m for d in documents for m in d.linked_mentions]
    assert (len(documents), len(all_mentions), len(linked_mentions)) == (docs, mentions, linked)
    if distinct is not None:
        assert len({m.entity_id for m in linked_mentions}) == distinct
    for doc in documents:
        for m in doc.mentions:
            assert doc.text[m.start : m.end] == m.text and m.text.strip()


def test_mentions_carry_names_and_types(data_dir):
    kore = load_benchmark("kore50", data_dir)
    first = kore[0].mentions[0]
    assert (first.text, first.entity_id, first.name, first.types) == ("Steve", "Q19837", "Steve Jobs", ("person",))
    tweet = load_benchmark("tweeki", data_dir)[0].mentions[0]
    assert (tweet.text, tweet.entity_id, tweet.types) == ("Syracuse", "Q15718182", ("organization",))
    aida = load_benchmark("aida-yago2-testb", data_dir)[0]
    assert aida.mentions[0].text == "JAPAN" and aida.mentions[0].name == "Japan national football team"
    assert aida.mentions[2].entity_id is None  # --NME--


def test_aida_join_agrees_with_elevant_mention_strings(data_dir):
    """The CoNLL join and ELEVANT's (masked) AIDA test-b give the same mention strings."""
    ours = [m.text for d in load_benchmark("aida-yago2-testb", data_dir) for m in d.mentions]
    elevant = [m.text for d in load_benchmark("aida-conll-test", data_dir) for m in d.mentions]
    agree = sum(a == b for a, b in zip(ours, elevant))
    assert len(ours) == len(elevant) and agree / len(ours) > 0.98


def test_zelda_skips_the_one_upstream_span_error(data_dir):
    with pytest.warns(UserWarning, match="outside the text"):
        tail = load_benchmark("zelda-shadowlinks-tail", data_dir)
    assert sum(len(d.mentions) for d in tail) == 900  # 901 in SOURCE.md, one span is out of range


def test_entities_from_documents(data_dir):
    kore = load_benchmark("kore50", data_dir)
    entities = {e.id: e for e in entities_from_documents(kore)}
    assert len(entities) == 126
    assert entity_text(entities["Q19837"]) == "Steve Jobs (person)"
    assert entities["Q19837"].aliases == () and entities["Q19837"].prior == 0
    # aliases and priors come only from the alias documents
    with_aliases = {e.id: e for e in entities_from_documents(kore, alias_docs=kore)}
    assert "Steve" in with_aliases["Q19837"].aliases and with_aliases["Q19837"].prior >= 1


def test_read_bio_entities(data_dir):
    found = list(read_bio_entities(data_dir / "gner_ner_bundle" / "WikiANN-en" / "train.txt", sep="\t"))
    assert found[0] == ("R.H. Saunders", "ORG")
    assert len(found) == 27931  # WikiANN-en train mentions in gner_ner_bundle/SOURCE.md


def test_unknown_benchmark_name(data_dir):
    with pytest.raises(ValueError, match="Unknown benchmark 'nope'"):
        load_benchmark("nope", data_dir)
    assert "kore50" in BENCHMARKS and "zelda-cweb" in BENCHMARKS
