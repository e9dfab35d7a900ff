"""Build a names-and-types knowledge base (JSONL) from the linking corpora, padded with distractors.

Benchmark entities: every Wikidata QID in the ELEVANT benchmarks and Tweeki,
with its gold name and coarse types. Aliases and priors come only from the
--alias-sources files (train/dev sets), never from the evaluation sets.

Distractors: real entity strings with their types from the NER corpora in
shared/data (gner_ner_bundle, wnut17), most frequent first, until the KB has
--target-size entities. A distractor whose normalised name equals an alias of
a benchmark entity is skipped: it may be that very entity under another id,
which would make a "wrong" answer secretly right.

    python projects/linking/scripts/build_kb.py --output kb.jsonl --target-size 100000
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

from tqdm import tqdm

# Run from a checkout without installing the package: put the repo root on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from spacy_gliner.kb.linking_benchmarks import (
    LinkedDocument,
    entities_from_documents,
    read_bio_entities,
    read_elevant,
    read_tweeki,
)
from spacy_gliner.kb.entities import Entity, write_entities_jsonl
from spacy_gliner.kb.normalize import normalize_mention

DEFAULT_ALIAS_SOURCES = ["aida-conll-dev", "oke-2015-train", "oke-2016-train"]

# NER tag -> natural-language type. Tags not listed (and not already a word,
# e.g. TweetNER7's "creative_work") are dropped rather than guessed.
TAG_LABELS: Dict[str, str] = {
    "PER": "person", "ORG": "organization", "LOC": "location", "MISC": "miscellaneous",
    "ANIM": "animal", "BIO": "biological entity", "CEL": "celestial body", "DIS": "disease",
    "EVE": "event", "FOOD": "food", "INST": "instrument", "MEDIA": "media", "PLANT": "plant",
    "MYTH": "mythological entity", "TIME": "time", "VEHI": "vehicle", "PHY": "physical phenomenon",
    "MATE": "material", "MANP": "manufacturing process", "MACEQ": "machine or equipment",
    "APPL": "application", "FEAT": "engineering feature", "PRO": "mechanical property",
    "CHAR": "process characterization", "PARA": "process parameter", "ENAT": "enabling technology",
    "CONPRI": "concept or principle", "MANS": "manufacturing standard", "BIOP": "biomedical",
    "GENE": "gene", "POINT": "point of interest", "AREA": "area", "ROAD": "road", "RIVER": "river",
}
UNCLEAR_TAGS = {"SUPER"}  # MultiNERD tag whose meaning we do not want to guess


def default_data_dir() -> Path:
    env = os.environ.get("SPACY_GLINER_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def tag_label(tag: str) -> str | None:
    if tag in UNCLEAR_TAGS:
        return None
    if tag in TAG_LABELS:
        return TAG_LABELS[tag]
    if tag.isupper():
        return None
    return tag.replace("_", " ").replace("-", " ").lower()


def ner_files(data_dir: Path, corpora: List[str] | None = None) -> List[Tuple[str, Path]]:
    """(corpus name, BIO file) pairs: every gner_ner_bundle set and wnut17, or only ``corpora``."""
    files = []
    for folder in sorted((data_dir / "gner_ner_bundle").iterdir()):
        if folder.is_dir():
            files += [(folder.name, folder / f) for f in ("train.txt", "dev.txt", "test.txt") if (folder / f).exists()]
    wnut = data_dir / "wnut17"
    files += [("wnut17", wnut / f) for f in ("wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated")
              if (wnut / f).exists()]
    if corpora is not None:
        unknown = set(corpora) - {name for name, _ in files}
        if unknown:
            raise ValueError(f"unknown NER corpora {sorted(unknown)}; available: {sorted({n for n, _ in files})}")
        files = [(name, path) for name, path in files if name in corpora]
    return files


def collect_distractor_names(data_dir: Path, corpora: List[str] | None = None
                             ) -> Tuple[Counter, Dict[Tuple[str, str], str], Dict[Tuple[str, str], str]]:
    """Count (normalised name, type) over the NER corpora; keep a surface form and source per key."""
    counts: Counter = Counter()
    surface: Dict[Tuple[str, str], Counter] = {}
    source: Dict[Tuple[str, str], str] = {}
    for corpus, path in tqdm(ner_files(data_dir, corpora), desc="Reading NER corpora", unit="file"):
        for text, tag in read_bio_entities(path, sep="\t"):
            label = tag_label(tag)
            key = (normalize_mention(text), label or "")
            if label is None or len(key[0]) < 2 or key[0].isdigit() or len(text) > 80:
                continue
            counts[key] += 1
            surface.setdefault(key, Counter())[text] += 1
            source.setdefault(key, corpus)
    best_surface = {key: forms.most_common(1)[0][0] for key, forms in surface.items()}
    return counts, best_surface, source


def elevant_files(data_dir: Path) -> List[Path]:
    return sorted((data_dir / "elevant_el_benchmarks").glob("*.benchmark.jsonl"))


def read_entity_docs(data_dir: Path) -> Iterator[LinkedDocument]:
    for path in elevant_files(data_dir):
        yield from read_elevant(path)
    yield from read_tweeki(data_dir / "tweeki_gold" / "Tweeki_gold.jsonl")


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="shared/data directory (default: $SPACY_GLINER_DATA or ../shared/data)")
    parser.add_argument("--output", type=Path, required=True, help="KB JSONL to write")
    parser.add_argument("--target-size", type=int, default=100_000,
                        help="total entities after padding with distractors (0: no distractors)")
    parser.add_argument("--alias-sources", nargs="*", default=DEFAULT_ALIAS_SOURCES,
                        help="ELEVANT benchmark stems whose mention surface forms become aliases/priors")
    parser.add_argument("--ner-corpora", nargs="*", default=None,
                        help="distractor sources (gner_ner_bundle folder names or wnut17; default: all)")
    args = parser.parse_args(argv)

    data_dir: Path = args.data_dir
    alias_paths = [data_dir / "elevant_el_benchmarks" / f"{stem}.benchmark.jsonl" for stem in args.alias_sources]
    for path in alias_paths:
        if not path.exists():
            parser.error(f"alias source {path} not found")
    docs = list(tqdm(read_entity_docs(data_dir), desc="Reading linking benchmarks", unit="doc"))
    alias_docs = [doc for path in alias_paths for doc in read_elevant(path)]
    entities = entities_from_documents(docs, alias_docs)
    taken = {normalize_mention(a) for e in entities for a in e.all_aliases()}
    stats: Dict[str, object] = {
        "benchmark_entities": len(entities),
        "benchmark_entities_with_types": sum(bool(e.types) for e in entities),
        "benchmark_entities_with_extra_aliases": sum(bool(e.aliases) for e in entities),
        "alias_sources": args.alias_sources,
    }

    distractors: List[Entity] = []
    per_source: Counter = Counter()
    skipped_collisions = 0
    needed = max(0, args.target_size - len(entities))
    if needed:
        counts, surface, source = collect_distractor_names(data_dir, args.ner_corpora)
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        bar = tqdm(total=needed, desc="Adding distractors", unit="ent")
        for (norm, label), count in ordered:
            if len(distractors) >= needed:
                break
            if norm in taken:
                skipped_collisions += 1
                continue
            digest = hashlib.sha1(f"{label}|{norm}".encode("utf-8")).hexdigest()[:16]
            distractors.append(Entity(id=f"ner:{digest}", name=surface[(norm, label)], types=(label,),
                                      prior=float(count)))
            per_source[source[(norm, label)]] += 1
            bar.update(1)
        bar.close()
        if len(distractors) < needed:
            print(f"warning: only {len(distractors)} distinct distractor names available; "
                  f"KB has {len(entities) + len(distractors)} < {args.target_size} entities", file=sys.stderr)
    stats.update({
        "distractors": len(distractors),
        "distractors_by_corpus": dict(per_source.most_common()),
        "distractor_names_skipped_as_benchmark_aliases": skipped_collisions,
    })
    args.output.parent.mkdir(parents=True, exist_ok=True)
    total = write_entities_jsonl(entities + distractors, args.output)
    stats["total_entities"] = total
    stats_path = args.output.with_name(args.output.name + ".stats.json")
    stats_path.write_text(json.dumps(stats, indent=2), encoding="utf-8")
    print(json.dumps(stats, indent=2))
    print(f"wrote {total} entities to {args.output} (stats: {stats_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
