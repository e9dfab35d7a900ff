"""NER and relation scores against hand-computed examples, spaCy's Scorer and GLiNER's evaluator."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc, Span
from spacy.training import Example

from spacy_gliner.evaluation import (
    evaluate_ner,
    evaluate_relations,
    make_examples,
    mean_over_datasets,
    per_type_markdown,
    plot_f1_bars,
    results_to_markdown,
    write_markdown,
)
from spacy_gliner.doc_relations import set_relations

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPACY_GLINER_DATA", REPO.parent / "shared" / "data"))
if not DATA.exists():
    DATA = Path("/work/shared/data")

VOCAB = spacy.blank("en").vocab


def _doc(words, ents=(), spans=None):
    doc = Doc(VOCAB, words=words)
    doc.set_ents([Span(doc, s, e, label=lab) for s, e, lab in ents], default="outside")
    if spans is not None:
        doc.spans["sc"] = [Span(doc, s, e, label=lab) for s, e, lab in spans]
    return doc


W = ["w0", "w1", "w2", "w3", "w4"]


def _hand_examples():
    """Four sentences; gold vs predicted (start, end, label), ends exclusive.

    doc1 gold: person[0:2], location[3:4]   pred: person[0:2] (TP), organization[3:4] (FP; gold location FN)
    doc2 gold: -                            pred: person[1:2] (FP), location[3:4] (FP)
    doc3 gold: location[0:1]                pred: -                              (FN)
    doc4 gold: person[2:3]                  pred: person[2:3] (TP)
    """
    gold = [
        [(0, 2, "person"), (3, 4, "location")],
        [],
        [(0, 1, "location")],
        [(2, 3, "person")],
    ]
    pred = [
        [(0, 2, "person"), (3, 4, "organization")],
        [(1, 2, "person"), (3, 4, "location")],
        [],
        [(2, 3, "person")],
    ]
    return [Example(_doc(W, p), _doc(W, g)) for p, g in zip(pred, gold)]


def test_ner_hand_computed():
    res = evaluate_ner(_hand_examples())
    # TP = 2 (doc1 person, doc4 person); FP = 3 (doc1 organization, doc2 person, doc2 location);
    # FN = 2 (doc1 location, doc3 location)
    assert (res["tp"], res["fp"], res["fn"]) == (2, 3, 2)
    # P = 2 / (2 + 3) = 0.4 ; R = 2 / (2 + 2) = 0.5 ; F = 2 * 0.4 * 0.5 / (0.4 + 0.5) = 0.4 / 0.9 = 4/9
    assert res["ents_p"] == pytest.approx(0.4)
    assert res["ents_r"] == pytest.approx(0.5)
    assert res["ents_f"] == pytest.approx(4 / 9)
    assert (res["n_docs"], res["n_gold"], res["n_pred"]) == (4, 4, 5)
    per = res["ents_per_type"]
    # person: gold {d1[0:2], d4[2:3]}, pred {d1[0:2], d2[1:2], d4[2:3]} -> TP 2, FP 1, FN 0
    #         P = 2/3, R = 1, F = 2 * (2/3) / (5/3) = 0.8
    assert (per["person"]["tp"], per["person"]["fp"], per["person"]["fn"]) == (2, 1, 0)
    assert per["person"]["p"] == pytest.approx(2 / 3)
    assert per["person"]["r"] == pytest.approx(1.0)
    assert per["person"]["f"] == pytest.approx(0.8)
    # location: gold {d1[3:4], d3[0:1]}, pred {d2[3:4]} -> TP 0, FP 1, FN 2 -> all 0
    assert (per["location"]["tp"], per["location"]["fp"], per["location"]["fn"]) == (0, 1, 2)
    assert per["location"]["f"] == 0.0 and per["location"]["support"] == 2
    # organization: one false positive, no gold
    assert (per["organization"]["tp"], per["organization"]["fp"], per["organization"]["fn"]) == (0, 1, 0)


def test_ner_matches_spacy_scorer():
    examples = _hand_examples()
    ours = evaluate_ner(examples)
    spacy_spans = Scorer.score_spans(examples, "ents")
    spacy_ner = get_ner_prf(examples)
    for key in ("ents_p", "ents_r", "ents_f"):
        assert ours[key] == pytest.approx(spacy_spans[key])
        assert ours[key] == pytest.approx(spacy_ner[key])
    for label, prf in spacy_ner["ents_per_type"].items():
        assert ours["ents_per_type"][label]["f"] == pytest.approx(prf["f"])


def test_ner_nested_gold_from_span_group_and_labels_listed():
    # gold keeps a nested span in "sc" that doc.ents cannot hold
    gold = _doc(W, ents=[(0, 3, "task")], spans=[(0, 3, "task"), (1, 3, "method")])
    pred = _doc(W, ents=[(1, 3, "method")])
    res = evaluate_ner([Example(pred, gold)], labels=["task", "method", "metric"])
    # TP 1 (method[1:3]), FP 0, FN 1 (task[0:3]): P = 1, R = 0.5, F = 2/3
    assert (res["tp"], res["fp"], res["fn"]) == (1, 0, 1)
    assert res["ents_f"] == pytest.approx(2 / 3)
    assert res["ents_per_type"]["metric"] == {"p": 0.0, "r": 0.0, "f": 0.0, "tp": 0, "fp": 0, "fn": 0, "support": 0}
    # scoring the gold's doc.ents only (gold_key=None) loses the nested span
    flat = evaluate_ner([Example(pred, gold)], gold_key=None)
    assert (flat["tp"], flat["fp"], flat["fn"]) == (0, 1, 1)
    # predictions read from a span group
    pred.spans["preds"] = [Span(pred, 0, 3, label="task"), Span(pred, 1, 3, label="method")]
    both = evaluate_ner([Example(pred, gold)], pred_key="preds")
    assert (both["tp"], both["fp"], both["fn"]) == (2, 0, 0) and both["ents_f"] == 1.0


def test_ner_no_spans_gives_none():
    res = evaluate_ner([Example(_doc(W), _doc(W))])
    assert res["ents_f"] is None and res["tp"] == res["fp"] == res["fn"] == 0


def test_make_examples_checks_texts():
    assert len(make_examples([_doc(W)], [_doc(W)])) == 1
    with pytest.raises(ValueError):
        make_examples([_doc(W)], [_doc(["other"] * 5)])
    with pytest.raises(ValueError):
        make_examples([_doc(W)], [])


@pytest.mark.skipif(not DATA.exists(), reason="shared corpora not available")
def test_ner_agrees_with_gliner_evaluator_on_real_data():
    """Score CrossNER AI test as annotated in the CrossNER BIO release (as "predictions")
    against GLiNER's JSON conversion (gold): our figure must equal GLiNER's own evaluator."""
    gliner_eval = pytest.importorskip("gliner.evaluation.evaluator")
    gliner_ner = pytest.importorskip("gliner.evaluation.evaluate_ner")
    from spacy_gliner.training.corpus_formats.bio_columns import read_crossner_bio
    from spacy_gliner.training.corpus_formats.gliner_json import read_gliner_json

    gold_path = DATA / "gliner_ner_datasets" / "CrossNER_AI" / "test.json"
    gold_docs, _ = read_gliner_json(gold_path)
    pred_docs, _ = read_crossner_bio(DATA / "crossner" / "ai" / "test.txt")
    ours = evaluate_ner(make_examples(pred_docs, gold_docs))

    raw = json.loads(gold_path.read_text())
    gold_ner = [gliner_ner.process(r)["ner"] for r in raw]
    pred_ner = [[(e.start, e.end - 1, e.label_) for e in d.ents] for d in pred_docs]
    evaluator = gliner_eval.BaseNEREvaluator(gold_ner, pred_ner)
    ref = evaluator.compute_prf(*evaluator.transform_data())
    assert ours["ents_p"] == pytest.approx(float(ref["precision"]))
    assert ours["ents_r"] == pytest.approx(float(ref["recall"]))
    assert ours["ents_f"] == pytest.approx(float(ref["f_score"]))
    assert 0.9 < ours["ents_f"] < 1.0  # the two releases differ slightly, so not a vacuous 1.0


# --------------------------------------------------------------------------- relations


def _rel_docs(pred_head_label="person"):
    words = "Anna works for Acme in Berlin".split()
    gold = _doc(words, ents=[(0, 1, "person"), (3, 4, "organization"), (5, 6, "location")])
    pred = _doc(words, ents=[(0, 1, pred_head_label), (3, 4, "organization"), (5, 6, "location")])
    set_relations(gold, [(0, 1, 3, 4, "work for", 1.0), (3, 4, 5, 6, "based in", 1.0)])
    set_relations(
        pred,
        [
            (0, 1, 3, 4, "work for", 0.9),  # correct
            (3, 4, 5, 6, "located in", 0.8),  # right pair, wrong label
            (5, 6, 0, 1, "based in", 0.4),  # wrong pair
        ],
    )
    return Example(pred, gold)


def test_relations_hand_computed():
    res = evaluate_relations([_rel_docs()])
    # strict: TP 1 (work for), FP 2, FN 1 (based in) -> P = 1/3, R = 1/2, F = 2*(1/6)/(5/6) = 0.4
    assert (res["strict"]["tp"], res["strict"]["fp"], res["strict"]["fn"]) == (1, 2, 1)
    assert res["strict"]["p"] == pytest.approx(1 / 3)
    assert res["strict"]["r"] == pytest.approx(0.5)
    assert res["strict"]["f"] == pytest.approx(0.4)
    # boundaries only: pairs (Anna,Acme) and (Acme,Berlin) are right -> TP 2, FP 1, FN 0
    # P = 2/3, R = 1, F = 0.8
    assert (res["boundaries"]["tp"], res["boundaries"]["fp"], res["boundaries"]["fn"]) == (2, 1, 0)
    assert res["boundaries"]["f"] == pytest.approx(0.8)
    # typed equals strict when entity labels agree
    assert res["typed"]["f"] == pytest.approx(0.4)
    assert res["per_label"]["work for"]["f"] == 1.0
    assert res["per_label"]["based in"]["fn"] == 1 and res["per_label"]["based in"]["fp"] == 1
    assert (res["n_gold"], res["n_pred"]) == (2, 3)


def test_relations_typed_threshold_and_symmetric():
    # a wrong head entity type breaks "typed" but not "strict"
    res = evaluate_relations([_rel_docs(pred_head_label="organization")])
    assert res["strict"]["tp"] == 1 and res["typed"]["tp"] == 0
    # threshold 0.5 drops the 0.4 prediction: strict TP 1, FP 1, FN 1 -> P = R = F = 0.5
    res = evaluate_relations([_rel_docs()], threshold=0.5)
    assert (res["strict"]["tp"], res["strict"]["fp"], res["strict"]["fn"]) == (1, 1, 1)
    assert res["strict"]["f"] == pytest.approx(0.5)
    # declaring "based in" symmetric turns (Berlin -> Anna) into (Anna, Berlin): still wrong;
    # a reversed copy of the gold relation would now match
    eg = _rel_docs()
    set_relations(eg.predicted, [(5, 6, 3, 4, "based in", 0.9)])
    assert evaluate_relations([eg])["strict"]["tp"] == 0
    assert evaluate_relations([eg], symmetric_labels=["based in"])["strict"]["tp"] == 1
    with pytest.raises(ValueError):
        evaluate_relations([eg], modes=["loose"])


def test_relations_with_different_tokenisation():
    gold = _doc(["New", "York", "hosts", "UN"], ents=[(0, 2, "city"), (3, 4, "org")])
    set_relations(gold, [(3, 4, 0, 2, "based in")])
    pred = _doc(["New York", "hosts", "UN"])  # one predicted token covers two gold tokens
    set_relations(pred, [(2, 3, 0, 1, "based in", 0.9)])
    res = evaluate_relations([Example(pred, gold)])
    assert res["strict"]["tp"] == 1 and res["strict"]["fp"] == 0


# --------------------------------------------------------------------------- reports


RESULTS = {
    "ai": {"ents_p": 0.5, "ents_r": 0.25, "ents_f": 1 / 3, "tp": 1, "fp": 1, "fn": 3},
    "music": {"ents_p": 1.0, "ents_r": 0.5, "ents_f": 2 / 3, "tp": 2, "fp": 0, "fn": 2},
}


def test_markdown_table():
    md = results_to_markdown(RESULTS, title="Zero-shot")
    # means: P (50 + 100)/2 = 75.0 ; R (25 + 50)/2 = 37.5 ; F (33.33 + 66.67)/2 = 50.0
    assert md == (
        "### Zero-shot\n\n"
        "| Dataset | P | R | F1 | TP | FP | FN |\n"
        "|---|---:|---:|---:|---:|---:|---:|\n"
        "| ai | 50.0 | 25.0 | 33.3 | 1 | 1 | 3 |\n"
        "| music | 100.0 | 50.0 | 66.7 | 2 | 0 | 2 |\n"
        "| **Average** | 75.0 | 37.5 | **50.0** |  |  |  |\n"
    )
    assert mean_over_datasets(RESULTS) == pytest.approx(0.5)
    per = per_type_markdown(evaluate_ner(_hand_examples()))
    lines = per.splitlines()
    assert lines[2] == "| location | 0.0 | 0.0 | 0.0 | 2 |"  # most support first, ties by name
    assert lines[3] == "| person | 66.7 | 100.0 | 80.0 | 2 |"


def test_write_markdown_and_png(tmp_path):
    md = write_markdown(tmp_path / "r" / "report.md", results_to_markdown(RESULTS), "done")
    assert md.read_text().endswith("done\n")
    png = plot_f1_bars(RESULTS, tmp_path / "r" / "f1.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_matplotlib_is_lazy():
    code = "import sys, spacy_gliner.evaluation; print('matplotlib' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"
