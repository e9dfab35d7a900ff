"""Entity records, the entity-text rule, strict JSONL loading and spaCy KB import."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import spacy

from spacy_gliner.kb.entities import (
    Entity,
    entities_from_spacy_kb,
    entity_text,
    load_entities_jsonl,
    write_entities_jsonl,
)
from spacy_gliner.kb.memory import InMemoryKB
from spacy_gliner.kb.normalize import char_ngrams, normalize_mention
from spacy_gliner.kb.sqlite import SQLiteKB


def test_entity_text_rule():
    assert entity_text(Entity("Q90", "Paris", description="capital of France", types=("city",))) == \
        "Paris: capital of France"
    assert entity_text(Entity("Q90", "Paris", types=("city", "capital"))) == "Paris (city, capital)"
    assert entity_text(Entity("Q90", "Paris")) == "Paris"
    # blank description falls through to the next rule; whitespace is collapsed
    assert entity_text(Entity("Q90", " Paris\n", description="   ", types=("city",))) == "Paris (city)"


def test_normalisation_is_shared_and_robust():
    assert normalize_mention("  U.S.\tSteel ") == "u s steel"
    assert normalize_mention("Ｍüller") == normalize_mention("muller")
    assert normalize_mention("Coca-Cola") == normalize_mention("coca cola")
    assert normalize_mention("STRASSE") == normalize_mention("straße")
    assert normalize_mention("!!!") == ""
    assert char_ngrams("ab") == [" ab", "ab "]
    assert char_ngrams("a") == [" a "]
    assert char_ngrams("") == []


def _write(tmp_path: Path, lines, trailing_newline=True) -> Path:
    path = tmp_path / "kb.jsonl"
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_round_trip_and_minimal_entities(tmp_path, small_entities):
    path = tmp_path / "kb.jsonl"
    assert write_entities_jsonl(small_entities, path) == len(small_entities)
    loaded = load_entities_jsonl(path)
    assert loaded == small_entities
    minimal = load_entities_jsonl(_write(tmp_path, ['{"id": "Q1", "name": "Solo"}', "", '{"id": "Q2", "name": "Duo", "type": "band"}']))
    assert minimal[0].aliases == () and minimal[0].description is None
    assert minimal[1].types == ("band",)
    kb = InMemoryKB(minimal)
    assert kb.lookup_alias("solo") == [("Q1", 1.0)]  # the name is an alias


@pytest.mark.parametrize(
    "lines,line_no,needle",
    [
        (['{"id": "Q1", "name": "A"}', '{"id": "Q2", "name": "B"'], 2, "malformed JSON"),
        (['{"id": "Q1", "name": "A"}', '{"name": "B"}'], 2, "missing required key 'id'"),
        (['{"id": "Q1"}'], 1, "missing required key 'name'"),
        (['{"id": 7, "name": "A"}'], 1, "'id' must be a string"),
        (['{"id": "Q1", "name": ""}'], 1, "'name' is empty"),
        (['{"id": "Q1", "name": "A", "aliases": "B"}'], 1, "'aliases' must be a list of strings"),
        (['{"id": "Q1", "name": "A", "prior": -1}'], 1, "'prior' must be a finite number >= 0"),
        (['{"id": "Q1", "name": "A", "desc": "typo"}'], 1, "unknown key(s) ['desc']"),
        (['["Q1", "A"]'], 1, "expected a JSON object"),
        (['{"id": "Q1", "name": "A"}', '{"id": "Q2", "name": "B"}', '{"id": "Q1", "name": "C"}'], 3,
         "duplicate id 'Q1' (first defined on line 1)"),
    ],
)
def test_bad_jsonl_names_file_line_and_fix(tmp_path, lines, line_no, needle):
    path = _write(tmp_path, lines)
    with pytest.raises(ValueError) as err:
        load_entities_jsonl(path)
    message = str(err.value)
    assert str(path) in message and f"line {line_no}:" in message and needle in message and "Fix:" in message


def test_truncated_last_line_is_reported_as_truncated(tmp_path):
    path = _write(tmp_path, ['{"id": "Q1", "name": "A"}', '{"id": "Q2", "na'], trailing_newline=False)
    with pytest.raises(ValueError, match=r"line 2: last line is truncated"):
        load_entities_jsonl(path)


def test_sqlite_build_is_all_or_nothing(tmp_path):
    lines = [json.dumps({"id": f"Q{i}", "name": f"N{i}"}) for i in range(30)] + ['{"id": "Q3", "name": "again"}']
    path = _write(tmp_path, lines)
    db = tmp_path / "kb.sqlite"
    with pytest.raises(ValueError, match=r"line 31: duplicate id 'Q3' \(first defined on line 4\)"):
        SQLiteKB.from_jsonl(path, db, batch_size=7)
    assert not db.exists() and not (tmp_path / "kb.sqlite.partial").exists()
    truncated = _write(tmp_path, lines[:5] + ['{"id": "Q9'], trailing_newline=False)
    with pytest.raises(ValueError, match="line 6: last line is truncated"):
        SQLiteKB.from_jsonl(truncated, db)
    assert not db.exists()


def test_import_from_spacy_in_memory_lookup_kb(tmp_path):
    from spacy.kb import InMemoryLookupKB

    nlp = spacy.blank("en")
    spacy_kb = InMemoryLookupKB(vocab=nlp.vocab, entity_vector_length=3)
    spacy_kb.add_entity(entity="Q1004791", freq=6, entity_vector=[0, 3, 5])
    spacy_kb.add_entity(entity="Q42", freq=342, entity_vector=[1, 9, -3])
    spacy_kb.add_entity(entity="Q5301561", freq=12, entity_vector=[-2, 4, 2])
    spacy_kb.add_entity(entity="Q999", freq=1, entity_vector=[0, 0, 1])  # no alias at all
    spacy_kb.add_alias(alias="Douglas", entities=["Q1004791", "Q42", "Q5301561"], probabilities=[0.6, 0.1, 0.2])
    spacy_kb.add_alias(alias="Douglas Adams", entities=["Q42"], probabilities=[0.9])

    table = tmp_path / "entities.csv"
    table.write_text("QID,Name,Description\nQ42,Douglas Adams,English writer and humorist\n"
                     "Q1004791,Douglas Haig,British Army officer\n", encoding="utf-8")
    entities = {e.id: e for e in entities_from_spacy_kb(spacy_kb, descriptions=table)}
    assert entities["Q42"].name == "Douglas Adams"
    assert entities["Q42"].description == "English writer and humorist"
    assert entities["Q42"].prior == 342
    assert entities["Q5301561"].name == "Douglas"  # no name in the table: its best alias
    assert entities["Q999"].name == "Q999" and entities["Q999"].description is None
    kb = InMemoryKB(entities.values())
    ids = [eid for eid, _ in kb.lookup_alias("douglas")]
    assert ids == ["Q1004791", "Q5301561", "Q42"]  # spaCy's P(entity|alias) order is kept

    tsv = tmp_path / "descriptions.tsv"
    tsv.write_text("Q42\tauthor of the Hitchhiker's Guide\n", encoding="utf-8")
    via_tsv = {e.id: e for e in entities_from_spacy_kb(spacy_kb, descriptions=tsv)}
    assert via_tsv["Q42"].description == "author of the Hitchhiker's Guide"
    via_dict = {e.id: e for e in entities_from_spacy_kb(spacy_kb, descriptions={"Q999": "a test entity"})}
    assert entity_text(via_dict["Q999"]) == "Q999: a test entity"

    bad = tmp_path / "bad.csv"
    bad.write_text("Q1,a\nQ2,b,c\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        entities_from_spacy_kb(spacy_kb, descriptions=bad)
