"""Corpus readers on the real files in ../shared/data, bad input, labels, convert CLI.

Expected counts are computed here by an independent, deliberately simple reading
of each file (or taken from the corpus's SOURCE.md where noted) and compared with
what the readers produce.
"""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_gliner.training import convert as conv
from spacy_gliner.training.corpus_formats.bio_columns import iter_bio, read_bio, read_conll, read_crossner_bio
from spacy_gliner.training.corpus_formats.dispatch import read_corpus
from spacy_gliner.training.corpus_formats.gliner_json import read_gliner_dataset, read_gliner_json
from spacy_gliner.training.corpus_formats.gold_docs import ReadStats
from spacy_gliner.training.corpus_formats.relation_json import read_conll04, read_crossre, read_scierc
from spacy_gliner.training.doc_keys import META_KEY, SPANS_KEY
from spacy_gliner.training.label_names import (
    CROSSNER_TO_GLINER,
    LABEL_TABLE,
    LabelMapper,
    load_label_map,
    normalize_label,
    normalize_relation_label,
)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SPACY_GLINER_DATA", REPO.parent / "shared" / "data"))
if not DATA.exists():
    DATA = Path("/work/shared/data")
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared corpora not available")


def _column_counts(path, tag_col=-1):
    """Independent count of sentences / B-starting mentions in a column file."""
    sents, ments, in_sent = 0, Counter(), False
    for line in Path(path).read_text(encoding="utf-8-sig").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            in_sent = False
            continue
        if not in_sent:
            sents += 1
            in_sent = True
        tag = (line.split("\t") if "\t" in line else line.split())[tag_col]
        if tag[:2] in ("B-", "S-"):
            ments[tag[2:]] += 1
    return sents, ments


# --------------------------------------------------------------------------- labels


def test_label_table():
    assert normalize_label("PER") == "person"
    assert normalize_label("LOC") == "location"
    assert normalize_label("ORG") == "organization"
    assert normalize_label("organisation") == "organization"
    assert normalize_label("MISC") == normalize_label("misc") == "miscellaneous"
    assert normalize_label("programlang") == "programming language"
    assert normalize_label("musicalartist") == "musical artist"
    assert normalize_label("Anatomical_system") == "anatomical system"
    assert normalize_label("creative-work") == normalize_label("creative_work") == "creative work"
    assert normalize_label("OtherScientificTerm") == "other scientific term"
    assert normalize_label("Peop") == "person"
    assert normalize_label("MATE") == "material"
    assert normalize_label("Some  New_Label ") == "some new label"
    # every table value is already normal: lower-case, no underscores, single spaces
    for value in LABEL_TABLE.values():
        assert value == value.lower() and "_" not in value and "  " not in value
    assert normalize_relation_label("USED-FOR") == "used for"
    assert normalize_relation_label("Live_In") == "live in"
    assert normalize_relation_label("OrgBased_In") == "organization based in"
    assert normalize_relation_label("general-affiliation") == "general affiliation"


def test_label_mapper_and_maps(tmp_path):
    m = LabelMapper("table", {"GENE": "gene or protein"})
    assert m("GENE") == "gene or protein" and m("gene") == "gene or protein" and m("PER") == "person"
    assert LabelMapper("lower")("Program Language") == "program language"
    assert LabelMapper("raw")("PER") == "PER"
    assert load_label_map("crossner") == CROSSNER_TO_GLINER
    assert load_label_map("A=x, B = y") == {"A": "x", "B": "y"}
    f = tmp_path / "map.json"
    f.write_text(json.dumps({"PER": "human"}))
    assert load_label_map(str(f)) == {"PER": "human"}
    with pytest.raises(ValueError):
        load_label_map("no-equals-sign")
    with pytest.raises(ValueError):
        LabelMapper("upper")


# --------------------------------------------------------------------------- GLiNER JSON


@needs_data
def test_gliner_json_crossner_ai_test():
    folder = DATA / "gliner_ner_datasets" / "CrossNER_AI"
    raw = json.loads((folder / "test.json").read_text())
    docs, labels, stats = read_gliner_dataset(folder, "test")
    assert len(docs) == len(raw) == 431
    assert stats.entities == sum(len(r["entities"]) for r in raw) == 1804
    assert not stats.skipped
    assert labels == [x.lower() for x in json.loads((folder / "labels.json").read_text())]
    assert "program language" in labels and "else" in labels
    doc = docs[0]
    assert [t.text for t in doc] == raw[0]["sentence"].split()
    assert doc.text == raw[0]["sentence"]
    # "Typical generative model approaches include naive Bayes classifier s , Gaussian mixture model s , ..."
    assert [(e.start, e.end, e.label_, e.text) for e in doc.ents] == [
        (5, 8, "algorithm", "naive Bayes classifier"),
        (10, 13, "algorithm", "Gaussian mixture model"),
        (15, 17, "algorithm", "variational autoencoders"),
    ]
    assert [(s.start, s.end, s.label_) for s in doc.spans[SPANS_KEY]] == [
        (e.start, e.end, e.label_) for e in doc.ents
    ]
    # a sentence without entities still carries "O" annotation (scorers must see its false positives)
    empty = [d for d in docs if len(d.ents) == 0]
    assert all(d.has_annotation("ENT_IOB") for d in empty)


@needs_data
def test_gliner_json_music_labels_outside_labels_json_are_noted():
    with pytest.warns(UserWarning, match="1 x misaligned_char_span"):
        docs, labels, stats = read_gliner_dataset(DATA / "gliner_ner_datasets" / "CrossNER_music", "test")
    assert len(docs) == 465
    raw = json.loads((DATA / "gliner_ner_datasets" / "CrossNER_music" / "test.json").read_text())
    not_in = sum(1 for r in raw for e in r["entities"] if e["type"].lower() not in labels)
    assert not_in == 379  # organisation 208 + misc 171, counted in the raw file
    # one entity has offsets that fall inside a word: skipped and counted, the rest kept
    assert stats.skipped == Counter({"misaligned_char_span": 1})
    assert stats.entities == 3334 - 1
    assert stats.notes["gold_label_not_in_labels_json"] == not_in - 1


@needs_data
def test_gliner_json_conll_misaligned_and_overlapping():
    docs, stats = read_gliner_json(DATA / "gliner_ner_datasets" / "CoNLL 2003" / "test.json", warn=False)
    assert len(docs) == 3453
    assert stats.skipped["misaligned_char_span"] == 10
    assert stats.entities == 5648 - 10
    assert stats.ents == stats.entities - stats.skipped["overlapping_span"]
    # overlapping gold stays in the span group
    assert sum(len(d.spans[SPANS_KEY]) for d in docs) == stats.entities
    assert sum(len(d.ents) for d in docs) == stats.ents


@needs_data
def test_gliner_training_format_sample():
    path = DATA / "gliner_sample_data" / "sample_data.json"
    raw = json.loads(path.read_text())
    docs, stats = read_gliner_json(path, warn=False)
    assert len(docs) == len(raw) == 64
    assert stats.entities == sum(len(r["ner"]) for r in raw) == 236
    first = docs[0]
    assert [t.text for t in first] == raw[0]["tokenized_text"]
    # [0, 5, "Publisher"] is end-inclusive: tokens 0..5
    (span,) = first.spans[SPANS_KEY]
    assert (span.start, span.end, span.label_) == (0, 6, "publisher")
    assert span.text == "State University of New York Press"
    raw_labels = Counter(lab.lower() for r in raw for _, _, lab in r["ner"])
    assert stats.labels == raw_labels


# --------------------------------------------------------------------------- BIO / CoNLL


@needs_data
@pytest.mark.parametrize("domain", ["ai", "literature", "music", "politics", "science"])
def test_crossner_bio_test_split(domain):
    path = DATA / "crossner" / domain / "test.txt"
    n_sents, ments = _column_counts(path)
    docs, stats = read_crossner_bio(path)
    assert len(docs) == n_sents
    assert stats.entities == sum(ments.values())
    assert not stats.skipped
    # label names equal GLiNER's labels.json for that domain
    gliner_dir = {"ai": "CrossNER_AI"}.get(domain, f"CrossNER_{domain}")
    labels = json.loads((DATA / "gliner_ner_datasets" / gliner_dir / "labels.json").read_text())
    assert set(stats.labels) == {x.lower() for x in labels}


@needs_data
def test_crossner_bio_known_counts_and_sentence():
    docs, stats = read_crossner_bio(DATA / "crossner" / "ai" / "test.txt")
    assert (len(docs), stats.tokens, stats.entities) == (431, 12991, 1809)  # SOURCE.md table
    assert [(e.start, e.end, e.label_) for e in docs[0].ents] == [
        (5, 8, "algorithm"),
        (10, 13, "algorithm"),
        (15, 17, "algorithm"),
    ]
    # default table names for the same file
    docs2, stats2 = read_bio(DATA / "crossner" / "ai" / "test.txt")
    assert "programming language" in stats2.labels and "miscellaneous" in stats2.labels
    assert stats2.labels["programming language"] == stats.labels["program language"] == 60


@needs_data
def test_gner_bundle_bioes_fabner_and_label_file():
    path = DATA / "gner_ner_bundle" / "FabNER" / "test.txt"
    n_sents, ments = _column_counts(path)
    docs, stats = read_bio(path)
    assert len(docs) == n_sents == 2064
    assert stats.entities == sum(ments.values()) == 9633  # B- plus S- (single-token) mentions
    assert set(stats.labels) <= {normalize_label(x) for x in (path.parent / "label.txt").read_text().split()}
    # every E- closes its entity: no entity runs past an E- tag
    lines = [l for l in path.read_text().splitlines() if l.strip()]
    assert sum(1 for l in lines if l.split("\t")[-1].startswith("E-")) == 3120


@needs_data
def test_conll2003_test():
    path = DATA / "conll2003" / "test.txt"
    docs, stats = read_conll(path)
    assert (len(docs), stats.tokens, stats.entities) == (3453, 46435, 5648)  # SOURCE.md
    assert stats.labels == Counter(
        {"location": 1668, "organization": 1661, "person": 1617, "miscellaneous": 702}
    )
    first = docs[0]
    assert [t.text for t in first][:3] == ["SOCCER", "-", "JAPAN"]
    assert [(e.start, e.end, e.label_) for e in first.ents] == [(2, 3, "location"), (7, 8, "person")]
    # provenance for joins with document-level annotations (AIDA)
    assert first.user_data[META_KEY]["document"] == 0
    assert first.user_data[META_KEY]["document_token_offset"] == 0
    second = docs[1]
    assert second.user_data[META_KEY]["document_token_offset"] == len(first)
    assert docs[-1].user_data[META_KEY]["document"] == 230  # 231 documents


@needs_data
def test_wnut17():
    docs, stats = read_conll(DATA / "wnut17" / "emerging.test.annotated")
    assert (len(docs), stats.entities) == (1287, 1079)
    assert stats.labels["creative work"] == 142 and stats.labels["person"] == 429
    dev, _ = read_conll(DATA / "wnut17" / "emerging.dev.conll")
    assert not dev[0][0].text.startswith("\ufeff")  # BOM stripped
    # the multi-label alternative test file is not BIO: its multi-label sentences are skipped
    with pytest.warns(UserWarning, match="unknown_bio_tag"):
        _, alt = read_conll(DATA / "wnut17" / "emerging.test.conll")
    assert alt.skipped["unknown_bio_tag"] > 0


# --------------------------------------------------------------------------- relation corpora


@needs_data
def test_conll04_test():
    path = DATA / "conll04" / "conll04_test.json"
    raw = json.loads(path.read_text())
    docs, stats = read_conll04(path)
    assert (len(docs), stats.entities, stats.relations) == (288, 1079, 422)
    assert stats.relations == sum(len(r["relations"]) for r in raw)
    doc = docs[1]  # PERUGIA , Italy ( AP )
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("PERUGIA", "location"),
        ("Italy", "location"),
        ("AP", "organization"),
    ]
    assert [(r.head.text, r.label, r.tail.text) for r in doc._.relations] == [
        ("PERUGIA", "located in", "Italy"),
        ("AP", "organization based in", "PERUGIA"),
        ("AP", "organization based in", "Italy"),
    ]
    assert doc.user_data[META_KEY]["orig_id"] == 23


@needs_data
def test_crossre_ai_test():
    path = DATA / "crossre" / "ai-test.json"
    raw = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    unique_rels = sum(len({tuple(r[:5]) for r in x["relations"]}) for x in raw)
    docs, stats = read_crossre(path, warn=False)
    assert (len(docs), stats.entities) == (431, 1811)
    assert stats.relations == unique_rels == 1163  # 1,164 lines in SOURCE.md, one is a duplicate
    assert stats.skipped == Counter({"duplicate_relation": 1})
    doc = docs[1]  # "Finally , every other year , ELRA organizes a major conference LREC , ..."
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("ELRA", "organization"),
        ("LREC", "conference"),
        ("International Language Resources and Evaluation Conference", "conference"),
    ]
    assert doc._.rel == {(6, 11): {"role": 1.0}, (14, 11): {"named": 1.0}}


@needs_data
def test_scierc_test_sentences_and_documents():
    path = DATA / "scierc" / "test.json"
    docs, stats = read_scierc(path, warn=False)
    assert (len(docs), stats.entities, stats.relations) == (551, 1685, 974)  # SOURCE.md
    first = docs[0]
    # nested gold: [0,3] Task contains [2,3] OtherScientificTerm (inclusive ends)
    assert [(s.start, s.end, s.label_) for s in first.spans[SPANS_KEY]][:2] == [
        (0, 4, "task"),
        (2, 4, "other scientific term"),
    ]
    assert (2, 4) not in [(e.start, e.end) for e in first.ents]
    assert stats.skipped["overlapping_span"] == stats.entities - stats.ents > 0
    assert [(r.head.text, r.label, r.tail.text) for r in first._.relations][0] == (
        "Recognition of proper nouns",
        "part of",
        "morphological analysis",
    )
    by_doc, dstats = read_scierc(path, by="document", warn=False)
    assert len(by_doc) == 100 and dstats.relations == 974
    assert sum(1 for _ in by_doc[0].sents) == len(
        json.loads(path.read_text().splitlines()[0])["sentences"]
    )


# --------------------------------------------------------------------------- bad input


def test_bad_gliner_json_is_skipped_and_counted(tmp_path):
    records = [
        {"sentence": "Alice met Bob in Paris", "entities": [
            {"name": "Alice", "type": "PER", "pos": [0, 5]},
            {"name": "Alice met", "type": "X", "pos": [0, 9]},  # overlaps Alice
            {"name": "Paris", "type": "LOC", "pos": [17, 22]},
            {"name": "Pari", "type": "LOC", "pos": [17, 21]},  # not on a word boundary
            {"name": "?", "type": "LOC", "pos": [17, 40]},  # out of range
        ]},
        {"sentence": "   ", "entities": []},  # empty document
        {"sentence": "no entities here", "entities": []},
        {"tokenized_text": ["a", "b"], "ner": [[0, 5, "thing"], [1, 1, "thing"], [1, 1, "thing"]]},
        {"unexpected": True},
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records))
    with pytest.warns(UserWarning) as record:
        docs, stats = read_gliner_json(path)
    message = str(record[0].message)
    for reason in ("empty_document", "misaligned_char_span", "span_out_of_range", "overlapping_span"):
        assert reason in message
    assert len(docs) == 3
    assert stats.skipped == Counter({
        "overlapping_span": 1,
        "misaligned_char_span": 1,
        "span_out_of_range": 2,
        "empty_document": 1,
        "duplicate_span": 1,
        "malformed_record": 1,
    })
    first = docs[0]
    assert [(e.text, e.label_) for e in first.ents] == [("Alice met", "x"), ("Paris", "loc")]
    assert len(first.spans[SPANS_KEY]) == 3  # Alice, Alice met, Paris
    assert [(s.start, s.end) for s in docs[2].spans[SPANS_KEY]] == [(1, 2)]


def test_bad_bio_is_skipped_and_counted(tmp_path):
    (tmp_path / "label.txt").write_text("PER\nLOC\n")
    path = tmp_path / "train.txt"
    path.write_text(
        "John\tB-PER\nlives\tO\nin\tO\nRome\tB-LOC\n\n"
        "Odd\tB-ANIMAL\n\n"  # type not in label.txt
        "Bad\tX-PER\n\n"  # unknown prefix
        "nocolumn\n\n"  # malformed line
        "and\tO\nthen\tI-PER\nsome\tI-PER\n\n"  # I- without B-: new entity (conlleval)
        "edge \tO\n\n"
    )
    with pytest.warns(UserWarning, match="unknown_bio_tag"):
        docs, stats = read_bio(path)
    assert len(docs) == 3
    assert stats.skipped == Counter({"unknown_bio_tag": 2, "malformed_line": 1})
    assert stats.notes["bio_inside_without_begin"] == 1
    assert [(e.start, e.end, e.label_) for e in docs[0].ents] == [(0, 1, "person"), (3, 4, "location")]
    assert [(e.start, e.end, e.label_) for e in docs[1].ents] == [(1, 3, "person")]
    assert docs[2][0].text == "edge" and stats.notes["token_whitespace_fixed"] == 1
    # without the label list the ANIMAL sentence is read
    stats2 = ReadStats()
    assert len(list(iter_bio(path, stats2, label_file=False))) == 4


def test_relation_bad_input(tmp_path):
    path = tmp_path / "rel.json"
    path.write_text(json.dumps([
        {"tokens": ["A", "hit", "B"], "entities": [{"type": "Peop", "start": 0, "end": 1},
                                                   {"type": "Peop", "start": 2, "end": 3}],
         "relations": [{"type": "Kill", "head": 0, "tail": 1}, {"type": "Kill", "head": 0, "tail": 7}]},
        {"tokens": [], "entities": [], "relations": []},
    ]))
    docs, stats = read_conll04(path, warn=False)
    assert len(docs) == 1
    assert stats.skipped == Counter({"relation_bad_entity_index": 1, "empty_document": 1})
    assert docs[0]._.rel == {(0, 2): {"kill": 1.0}}
    cr = tmp_path / "cr.json"
    cr.write_text(
        json.dumps({"sentence": ["x", "y"], "ner": [[0, 0, "misc"]], "relations": [[0, 0, 1, 5, "r", "", False, False]]})
        + "\nnot json\n"
    )
    docs, stats = read_crossre(cr, warn=False)
    assert len(docs) == 1 and docs[0].ents[0].label_ == "else"
    assert stats.skipped == Counter({"relation_out_of_range": 1, "malformed_record": 1})


# --------------------------------------------------------------------------- convert


@needs_data
def test_convert_function_and_docbin_round_trip(tmp_path):
    out = tmp_path / "crossre.spacy"
    code = conv.main(["crossre", str(DATA / "crossre" / "ai-test.json"), str(out), "--quiet",
                      "--limit", "50", "--stats-json", str(tmp_path / "stats.json")])
    assert code == 0
    docs = list(DocBin().from_disk(out).get_docs(spacy.blank("en").vocab))
    direct, _ = read_crossre(DATA / "crossre" / "ai-test.json", limit=50, warn=False)
    assert len(docs) == 50
    for a, b in zip(docs, direct):
        assert [t.text for t in a] == [t.text for t in b]
        assert [(s.start, s.end, s.label_) for s in a.spans[SPANS_KEY]] == [
            (s.start, s.end, s.label_) for s in b.spans[SPANS_KEY]
        ]
        assert a._.rel == b._.rel
    assert json.loads((tmp_path / "stats.json").read_text())["docs"] == 50


@needs_data
def test_convert_cli_directory(tmp_path):
    out = tmp_path / "ai.spacy"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(
        [sys.executable, "-m", "spacy_gliner.training.convert", "crossner",
         str(DATA / "crossner" / "ai"), str(out)],
        capture_output=True, text=True, env=env, check=True,
    )
    assert "881 docs" in res.stdout  # train 100 + dev 350 + test 431
    assert "doc/s" in res.stderr or "doc" in res.stderr  # tqdm progress bar
    docs = list(DocBin().from_disk(out).get_docs(spacy.blank("en").vocab))
    assert len(docs) == 881 and sum(len(d.ents) for d in docs) == 532 + 1549 + 1809


def test_registered_corpus_reader(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"sentence": "Ada Lovelace wrote notes", "entities": [
        {"name": "Ada Lovelace", "type": "Person", "pos": [0, 12]}]}]))
    reader = spacy.registry.readers.get("spacy_gliner.GoldCorpus.v1")(path=str(path), format="gliner-json")
    nlp = spacy.blank("en")
    (eg,) = list(reader(nlp))
    assert [t.text for t in eg.predicted] == ["Ada", "Lovelace", "wrote", "notes"]
    assert not eg.predicted.ents and [(e.text, e.label_) for e in eg.reference.ents] == [("Ada Lovelace", "person")]
    with pytest.raises(ValueError):
        read_corpus("nope", path)


def test_modules_do_not_import_torch():
    readers = sorted(str(p.relative_to(REPO)) for p in (REPO / "spacy_gliner/training/corpus_formats").glob("*.py"))
    for rel in (*readers, "spacy_gliner/training/label_names.py", "spacy_gliner/training/doc_keys.py",
                "spacy_gliner/training/gold_corpus_reader.py", "spacy_gliner/training/convert.py",
                "spacy_gliner/evaluation.py", "spacy_gliner/doc_relations.py"):
        src = (REPO / rel).read_text()
        assert "import torch" not in src and "transformers" not in src.replace("spacy-transformers", "")
