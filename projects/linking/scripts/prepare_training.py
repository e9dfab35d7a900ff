"""Training data for the linker: AIDA CoNLL-YAGO train (gold links) as DocBins, and its KB.

    python prepare_training.py --data-dir ../../../shared/data --output-dir corpus \
        [--train-docs 946] [--dev-docs 20] [--target-size 0]

Reads the training split named in shared/README.md: AIDA CoNLL-YAGO documents 1-946
(``aida-yago2-train``, CoNLL-2003 train text joined with its Wikipedia links), and for the dev set
of ``spacy train`` the first ``--dev-docs`` documents of test-a (``aida-yago2-testa``). The
evaluation sets (AIDA test-b, KORE50, MSNBC, Reuters-128, RSS-500) are never read here.

Writes into ``--output-dir``:

* ``train.spacy`` / ``dev.spacy``: one Doc per sentence with at least one mention
  (``convert_linking --by line``); entities carry the gold id (``enwiki:<page id>``) or ``NIL``;
* ``kb_train.jsonl``: every entity linked in those documents, named by its Wikipedia title,
  typed by the CoNLL tag of its mentions (person / organization / location / miscellaneous);
  aliases and priors from the *training* mentions only (dev entities get their name as only
  alias). Ids are Wikipedia page ids, not Wikidata QIDs: this KB serves training only; the
  evaluation KB (build_kb.py) is a different one, and the trained linker is pointed at it
  afterwards (``evaluate_linking.py embed --pipeline``).
* ``prepare_training.json``: counts.

``--target-size`` pads the training KB with the same NER-corpus distractors as build_kb.py
(0: none; every update re-embeds nothing, but saving and evaluating during training re-embed
the whole training KB, so a small one keeps training fast).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_kb import collect_distractor_names, default_data_dir  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    import spacy
    from spacy.tokens import DocBin

    from spacy_gliner.kb.linking_benchmarks import entities_from_documents, load_benchmark
    from spacy_gliner.kb.entities import Entity, write_entities_jsonl
    from spacy_gliner.kb.normalize import normalize_mention
    from spacy_gliner.training.convert_linking import linked_docs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--train-docs", type=int, default=None, help="first N training documents (default: all 946)")
    parser.add_argument("--dev-docs", type=int, default=20, help="first N test-a documents as the dev set")
    parser.add_argument("--target-size", type=int, default=0, help="pad the training KB with distractors up to this size")
    args = parser.parse_args(argv)

    train = load_benchmark("aida-yago2-train", args.data_dir)[: args.train_docs]
    dev = load_benchmark("aida-yago2-testa", args.data_dir)[: args.dev_docs]
    entities = entities_from_documents(train + dev, alias_docs=train)
    if args.target_size > len(entities):
        taken = {normalize_mention(a) for e in entities for a in e.all_aliases()}
        counts, surface, _ = collect_distractor_names(args.data_dir)
        for (norm, label), count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            if len(entities) >= args.target_size:
                break
            if norm in taken:
                continue
            digest = hashlib.sha1(f"{label}|{norm}".encode("utf-8")).hexdigest()[:16]
            entities.append(Entity(id=f"ner:{digest}", name=surface[(norm, label)], types=(label,), prior=float(count)))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_entities_jsonl(entities, args.output_dir / "kb_train.jsonl")
    nlp = spacy.blank("en")
    report = {"kb_entities": len(entities)}
    for name, documents in (("train", train), ("dev", dev)):
        stats: Counter = Counter()
        db = DocBin(store_user_data=True)
        for doc in linked_docs(documents, nlp, by="line", corpus=f"aida-yago2-{name}", stats=stats):
            db.add(doc)
        db.to_disk(args.output_dir / f"{name}.spacy")
        report[name] = {"documents": len(documents), **stats}
    (args.output_dir / "prepare_training.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
