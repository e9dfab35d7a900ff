"""InMemoryKB and SQLiteKB: one interface, identical answers, errors, serialisation."""
from __future__ import annotations

import pytest

from spacy_gliner.kb.base import KnowledgeBase, ensure_not_empty
from spacy_gliner.kb.opening import load_kb
from spacy_gliner.kb.linking_benchmarks import entities_from_documents, load_benchmark
from spacy_gliner.kb.entities import Entity
from spacy_gliner.kb.memory import InMemoryKB
from spacy_gliner.kb.sqlite import SQLiteKB


def make_kb(kind, entities, tmp_path):
    if kind == "memory":
        return InMemoryKB(entities)
    return SQLiteKB.create(tmp_path / "kb.sqlite", entities)


@pytest.fixture(params=["memory", "sqlite"])
def kind(request):
    return request.param


def test_protocol_basics(kind, tmp_path, small_entities):
    kb = make_kb(kind, small_entities, tmp_path)
    assert isinstance(kb, KnowledgeBase)
    assert len(kb) == 7 and not kb.is_empty
    assert "Q90" in kb and "Q0" not in kb and 90 not in kb
    assert kb.get("Q142") == small_entities[3]
    assert [e.id for e in kb.get_many(["Q89", "Q90", "Q89"])] == ["Q89", "Q90", "Q89"]
    assert list(kb.ids()) == [e.id for e in small_entities]
    assert kb.row_of("Q312") == 4 and kb.ids_at([4, 0]) == ["Q312", "Q90"]
    assert list(kb.iter_entities()) == small_entities


def test_alias_priors(kind, tmp_path, small_entities):
    kb = make_kb(kind, small_entities, tmp_path)
    # Three entities share "paris"; weights are their priors 100/20/5, normalised.
    found = kb.lookup_alias("  PARIS ")
    assert [eid for eid, _ in found] == ["Q90", "Q47899", "Q167646"]
    assert [round(p, 3) for _, p in found] == [0.8, 0.16, 0.04]
    # alias_priors override the entity prior for that alias
    assert kb.lookup_alias("french republic") == [("Q142", 1.0)]
    # all-zero weights -> uniform
    zero = make_kb(kind, [Entity("A", "Jordan"), Entity("B", "jordan")], tmp_path / "z")
    assert zero.lookup_alias("Jordan") == [("A", 0.5), ("B", 0.5)]
    assert kb.lookup_alias("no such alias") == [] and kb.lookup_alias("...") == []


def test_unknown_ids_raise_keyerror_naming_the_id(kind, tmp_path, small_entities):
    kb = make_kb(kind, small_entities, tmp_path)
    with pytest.raises(KeyError, match="'Q404'"):
        kb.get("Q404")
    with pytest.raises(KeyError, match="'Q404', 'Q405'"):
        kb.get_many(["Q90", "Q404", "Q405"])
    with pytest.raises(KeyError, match="'Q404'"):
        kb.row_of("Q404")


def test_empty_kb(kind, tmp_path):
    kb = make_kb(kind, [], tmp_path)
    assert len(kb) == 0 and kb.is_empty and list(kb.ids()) == [] and kb.lookup_alias("x") == []
    with pytest.raises(ValueError, match="is empty: nothing can be linked"):
        ensure_not_empty(kb, "gliner_linker")
    kb.to_disk(tmp_path / "empty_out")
    again = load_kb(tmp_path / "empty_out")
    assert again.is_empty and type(again) is type(kb)


def test_add_entities_is_atomic(kind, tmp_path, small_entities):
    kb = make_kb(kind, small_entities[:3], tmp_path)
    before = kb.content_hash
    with pytest.raises(ValueError, match="'Q90'"):
        kb.add_entities([Entity("Q1", "New"), Entity("Q90", "Paris again")])
    assert len(kb) == 3 and "Q1" not in kb and kb.content_hash == before
    kb.add_entities(small_entities[3:])
    assert len(kb) == 7 and kb.row_of("Q19837") == 6 and kb.content_hash != before
    assert list(kb.iter_entities()) == small_entities


def test_to_disk_from_disk_round_trip(kind, tmp_path, small_entities):
    kb = make_kb(kind, small_entities, tmp_path)
    kb.to_disk(tmp_path / "saved")
    loaded = load_kb(tmp_path / "saved")
    assert type(loaded) is type(kb)
    assert list(loaded.iter_entities()) == small_entities
    assert loaded.content_hash == kb.content_hash
    assert loaded.lookup_alias("apple") == kb.lookup_alias("apple")
    # saving again into the same directory works (SQLite: no self-copy)
    loaded.to_disk(tmp_path / "saved")
    assert list(load_kb(tmp_path / "saved").ids()) == [e.id for e in small_entities]


def test_from_disk_rejects_missing_or_foreign_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a serialised knowledge base"):
        load_kb(tmp_path)


def test_sqlite_and_memory_agree_on_a_real_benchmark_kb(tmp_path, data_dir):
    """Same entities -> same rows, ids, records and alias answers for every real mention."""
    docs = load_benchmark("reuters-128", data_dir) + load_benchmark("kore50", data_dir)
    alias_docs = load_benchmark("msnbc", data_dir)
    entities = entities_from_documents(docs, alias_docs)
    assert len(entities) > 400
    memory = InMemoryKB(entities)
    sqlite = SQLiteKB.create(tmp_path / "real.sqlite", entities)
    assert list(memory.ids()) == list(sqlite.ids())
    assert memory.content_hash == sqlite.content_hash
    assert sorted(memory.iter_alias_rows()) == sorted(sqlite.iter_alias_rows())
    mentions = [m.text for d in docs + alias_docs for m in d.mentions]
    answered = 0
    for text in mentions:
        left, right = memory.lookup_alias(text), sqlite.lookup_alias(text)
        assert [e for e, _ in left] == [e for e, _ in right], text
        assert [p for _, p in left] == pytest.approx([p for _, p in right])
        answered += bool(left)
    assert answered > 300  # the comparison is not vacuous
    sample = [e.id for e in entities[::37]]
    assert memory.get_many(sample) == sqlite.get_many(sample)
