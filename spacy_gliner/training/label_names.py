"""Prompt-style label names: the tables that rename raw corpus labels the way the GLiNER papers
prompt them (lower-case natural language), and the mappers the corpus readers apply.

Components use :func:`normalize_label` too, so this module stays free of the readers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

__all__ = [
    "LABEL_TABLE",
    "CROSSNER_TO_GLINER",
    "RELATION_LABEL_TABLE",
    "LABEL_MAP_PRESETS",
    "LabelMapper",
    "normalize_label",
    "normalize_relation_label",
    "load_label_map",
    "squash_spaces",
]

# CrossNER writes multi-word types as one glued word; both tables below split them the same way.
_CROSSNER_GLUED_NAMES: Dict[str, str] = {
    "musicalartist": "musical artist",
    "musicalinstrument": "musical instrument",
    "musicgenre": "music genre",
    "literarygenre": "literary genre",
    "politicalparty": "political party",
    "astronomicalobject": "astronomical object",
    "chemicalcompound": "chemical compound",
    "chemicalelement": "chemical element",
    "academicjournal": "academic journal",
}

#: Raw corpus label -> prompt label, matched case-insensitively. Labels not in
#: the table are lower-cased, ``_`` becomes a space and runs of spaces collapse
#: (``Anatomical_system`` -> ``anatomical system``).
#:
#: ============================ ======================================= =========================
#: raw label(s)                 prompt label                            corpora
#: ============================ ======================================= =========================
#: PER, PERSON, Peop            person                                  CoNLL, WikiANN, CoNLL04
#: LOC, Loc                     location                                CoNLL, CoNLL04
#: ORG, Org, organisation       organization                            CoNLL, CrossNER, CoNLL04
#: MISC, misc                   miscellaneous                           CoNLL, CrossNER
#: GPE                          geopolitical entity                     (OntoNotes style)
#: programlang                  programming language                    CrossNER ai
#: musicalartist ...            musical artist, music genre, ...        CrossNER (glued words)
#: creative-work, creative_work creative work                           WNUT-17, TweetNER7
#: OtherScientificTerm          other scientific term                   SciERC
#: MATE, MANP, ... (FabNER)     material, manufacturing process, ...    FabNER (UniNER names)
#: ANIM, BIO, CEL, ... (MultiNERD) animal, biological entity, ...       MultiNERD
#: ============================ ======================================= =========================
LABEL_TABLE: Dict[str, str] = {
    # CoNLL-2003 / WikiANN / WikiNeural / Broad Twitter / MultiNERD core
    "per": "person",
    "person": "person",
    "peop": "person",
    "loc": "location",
    "org": "organization",
    "organisation": "organization",
    "misc": "miscellaneous",
    "gpe": "geopolitical entity",
    # CrossNER glued names
    "programlang": "programming language",
    **_CROSSNER_GLUED_NAMES,
    # WNUT-17 / TweetNER7
    "creative-work": "creative work",
    "creative_work": "creative work",
    # SciERC
    "otherscientificterm": "other scientific term",
    # FabNER codes (names as in the UniNER / InstructUIE prompts)
    "mate": "material",
    "manp": "manufacturing process",
    "maceq": "machine or equipment",
    "appl": "application",
    "feat": "engineering feature",
    "pro": "mechanical property",
    "char": "process characterization",
    "para": "process parameter",
    "enat": "enabling technology",
    "conpri": "concept or principle",
    "mans": "manufacturing standard",
    "biop": "biomedical",
    # MultiNERD codes
    "anim": "animal",
    "bio": "biological entity",
    "cel": "celestial body",
    "dis": "disease",
    "eve": "event",
    "inst": "instrument",
    "myth": "mythological entity",
    "vehi": "vehicle",
}

#: CrossNER / CrossRE raw labels -> the names in GLiNER's CrossNER
#: ``labels.json`` (lower-cased). Labels not listed are kept lower-cased.
#: With this map, reading ``crossner/<domain>/test.txt`` yields exactly the
#: label set of ``gliner_ner_datasets/CrossNER_<domain>/labels.json``.
CROSSNER_TO_GLINER: Dict[str, str] = {
    "misc": "else",
    "organisation": "organization",
    "programlang": "program language",
    **_CROSSNER_GLUED_NAMES,
}

#: Relation labels: matched case-insensitively; otherwise lower-case with
#: ``_`` and ``-`` turned into spaces (``USED-FOR`` -> ``used for``,
#: ``general-affiliation`` -> ``general affiliation``, ``Live_In`` -> ``live in``).
RELATION_LABEL_TABLE: Dict[str, str] = {
    "orgbased_in": "organization based in",  # CoNLL04 (SpERT verbose name)
}

#: Named label maps usable as ``label_map=`` or ``--label-map``.
LABEL_MAP_PRESETS: Dict[str, Dict[str, str]] = {
    "crossner": CROSSNER_TO_GLINER,
    "table": LABEL_TABLE,
}

_SPACES = re.compile(r"\s+")


def squash_spaces(text: str) -> str:
    """``text`` with runs of whitespace collapsed to one space and its ends stripped."""
    return _SPACES.sub(" ", text).strip()


def normalize_label(label: str, table: Mapping[str, str] = LABEL_TABLE) -> str:
    """Prompt-style name of a raw entity label (see :data:`LABEL_TABLE`)."""
    key = label.strip().lower()
    if key in table:
        return table[key]
    return squash_spaces(key.replace("_", " "))


def normalize_relation_label(label: str) -> str:
    """Prompt-style name of a raw relation label (see :data:`RELATION_LABEL_TABLE`)."""
    key = label.strip().lower()
    if key in RELATION_LABEL_TABLE:
        return RELATION_LABEL_TABLE[key]
    return squash_spaces(key.replace("_", " ").replace("-", " "))


def load_label_map(spec: Union[None, str, Mapping[str, str]]) -> Optional[Dict[str, str]]:
    """Parse a label map given as a dict, a preset name (:data:`LABEL_MAP_PRESETS`),
    a path to a JSON object file, or inline ``"PER=person,LOC=location"``."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, Mapping):
        return {str(k): str(v) for k, v in spec.items()}
    if spec in LABEL_MAP_PRESETS:
        return dict(LABEL_MAP_PRESETS[spec])
    path = Path(spec)
    if path.suffix == ".json" and path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"label map file {path} must hold a JSON object")
        return {str(k): str(v) for k, v in data.items()}
    out: Dict[str, str] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(
                f"cannot read label map {spec!r}: expected a preset "
                f"({', '.join(LABEL_MAP_PRESETS)}), a .json file or 'RAW=name,...'"
            )
        raw, new = part.split("=", 1)
        out[raw.strip()] = new.strip()
    return out


class LabelMapper:
    """Callable raw label -> final label.

    ``label_map`` (exact key first, then case-insensitive) wins; otherwise
    ``mode`` decides: ``"table"`` -> :func:`normalize_label`, ``"lower"`` ->
    lower-case only (GLiNER's own evaluator), ``"raw"`` -> unchanged.
    """

    MODES = ("table", "lower", "raw")

    def __init__(self, mode: str = "table", label_map: Union[None, str, Mapping[str, str]] = None):
        if mode not in self.MODES:
            raise ValueError(f"label mode must be one of {self.MODES}, not {mode!r}")
        self.mode = mode
        self.label_map = load_label_map(label_map) or {}
        self._lower_map = {k.lower(): v for k, v in self.label_map.items()}
        self._cache: Dict[str, str] = {}

    def __call__(self, label: str) -> str:
        if label in self._cache:
            return self._cache[label]
        if label in self.label_map:
            out = self.label_map[label]
        elif label.lower() in self._lower_map:
            out = self._lower_map[label.lower()]
        elif self.mode == "table":
            out = normalize_label(label)
        elif self.mode == "lower":
            out = label.lower()
        else:
            out = label
        self._cache[label] = out
        return out
