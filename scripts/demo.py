"""The end of `./run main`: the model that the quick workflow has just trained, on held-out text.

It loads projects/zero_shot_ner/training/quick/model-last, states how good it is (the workflow's own
zero-shot CrossNER F1, read from its metrics), prints and draws its entities on CrossNER politics
test sentences that neither training nor the quick evaluation used, annotates a 20,000-word
document (windowed, nothing truncated) and checks that the saved pipeline reloads with the same
output. The picture is demo_output/entities.html (and entities.png when Chromium is installed).
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import spacy  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PROJECT = ROOT / "projects" / "zero_shot_ner"
MODEL = PROJECT / "training" / "quick" / "model-last"
METRICS = PROJECT / "metrics" / "quick_zero_shot.json"
OUT = ROOT / "demo_output"
HELD_OUT = slice(100, 106)  # the quick evaluation scores the first 100 test sentences of each domain


def quality() -> tuple:
    """(threshold with the best mean F1, that F1 in %) from the quick workflow's evaluation."""
    metrics = json.loads(METRICS.read_text(encoding="utf-8"))
    threshold, mean_f = max(((float(t), m or 0.0) for t, m in metrics["mean_f"].items()), key=lambda x: x[1])
    return threshold, 100 * mean_f


def screenshot(page: Path, image: Path) -> bool:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return False
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={image}", "--window-size=1100,1400", page.resolve().as_uri()],
                          capture_output=True, timeout=120)
    return done.returncode == 0 and image.exists()


def main() -> None:
    from spacy_gliner import render

    if not MODEL.is_dir():
        sys.exit(f"{MODEL} is missing: run the quick workflow first (cd projects/zero_shot_ner && python -m weasel run quick)")
    threshold, f1 = quality()
    print(f"\nThe model just trained by the quick workflow: {MODEL.relative_to(ROOT)}")
    print(f"Its zero-shot quality: mean CrossNER F1 {f1:.1f} at threshold {threshold} (5 domains, first 100 test "
          "sentences each). A 600-step pipeline check on small samples: expect misses and wrong labels.")

    rows = json.loads((DATA / "gliner_ner_datasets" / "CrossNER_politics" / "test.json").read_text())
    labels = json.loads((DATA / "gliner_ner_datasets" / "CrossNER_politics" / "labels.json").read_text())
    nlp = spacy.load(MODEL)
    for name in [n for n in nlp.pipe_names if n != "gliner_ner"]:
        nlp.remove_pipe(name)
    ner = nlp.get_pipe("gliner_ner")
    ner.initialize(labels=sorted({label.lower() for label in labels}))  # as the evaluation prompts them
    ner.cfg["threshold"] = threshold
    texts = [row["sentence"] for row in rows[HELD_OUT]]
    start = time.perf_counter()
    docs = list(nlp.pipe(texts))
    elapsed = time.perf_counter() - start
    for doc in docs[:3]:
        print("\n" + doc.text)
        print("  ents:", [(ent.text, ent.label_) for ent in doc.ents][:8])
    OUT.mkdir(exist_ok=True)
    page = OUT / "entities.html"
    page.write_text(render(docs, title=f"spacy-gliner quick model on held-out CrossNER politics (mean F1 {f1:.1f})"),
                    encoding="utf-8")
    drawn = screenshot(page, OUT / "entities.png")
    print(f"\nPicture of these {len(docs)} sentences: {page}" + (f" and {OUT / 'entities.png'}" if drawn else ""))

    long_words = [w for row in rows for w in row["sentence"].split()][:20_000]
    long_doc = nlp(Doc(nlp.vocab, words=long_words))
    last = max((s.end for s in long_doc.spans["sc"]), default=0)
    print(f"{len(docs)} sentences in {elapsed:.1f}s; a {len(long_words)}-word document: "
          f"{len(long_doc.spans['sc'])} spans, the last ending at word {last}.")
    nlp.to_disk(OUT / "pipeline")
    reloaded = spacy.load(OUT / "pipeline")
    same = [(e.start, e.end, e.label_) for e in reloaded(texts[0]).ents] == [(e.start, e.end, e.label_) for e in docs[0].ents]
    print(f"Saved to {OUT / 'pipeline'}; reloaded offline with identical output: {same}")
    summary = {
        "model": str(MODEL.relative_to(ROOT)),
        "mean_crossner_f1": round(f1, 1),
        "threshold": threshold,
        "held_out_sentences": len(docs),
        "seconds": round(elapsed, 2),
        "entities": sum(len(d.ents) for d in docs),
        "long_document_words": len(long_words),
        "long_document_last_span_end": last,
        "reload_identical": same,
        "picture": str(page.relative_to(ROOT)),
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    if not same:
        sys.exit("reloaded pipeline gave different output")


if __name__ == "__main__":
    main()
