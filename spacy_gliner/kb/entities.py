"""Entity records, the text the model reads for each entity, and JSONL I/O.

An :class:`Entity` is what a knowledge base stores per row. The linker never
sees raw records: it scores mentions against ``entity_text(entity)``, so the
rule that turns a record into text lives here, next to the record, and is the
only place that decides it.

JSONL format (one object per line, UTF-8; blank lines are ignored)::

    {"id": "Q90", "name": "Paris",
     "aliases": ["City of Light"],            # optional, list of strings
     "description": "capital of France",      # optional, string or null
     "types": ["city"],                       # optional, list of strings
     "prior": 12.0,                           # optional, popularity >= 0
     "alias_priors": {"Paris": 0.9}}          # optional, alias -> weight >= 0

``type`` (a single string) is accepted as a synonym of ``types``. Unknown keys
are rejected so that a typo such as ``"desc"`` cannot silently drop data.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from .normalize import normalize_mention

PathLike = Union[str, Path]

ALLOWED_KEYS = frozenset(
    {"id", "name", "aliases", "description", "types", "type", "prior", "alias_priors"}
)


@dataclass
class Entity:
    """One knowledge-base entry.

    id: unique string identifier (e.g. a Wikidata QID).
    name: canonical name; always usable as an alias.
    aliases: other surface forms (the name need not be repeated here).
    description: short gloss, or None when the source has none.
    types: coarse type labels in natural language ("person", "city").
    prior: popularity (e.g. link count); only relative values matter.
    alias_priors: optional per-alias weight of this entity, e.g. how often the
        alias was linked to it. Overrides ``prior`` for that alias when the KB
        ranks the entities sharing an alias (see ``KnowledgeBase.lookup_alias``).
    """

    id: str
    name: str
    aliases: Tuple[str, ...] = ()
    description: Optional[str] = None
    types: Tuple[str, ...] = ()
    prior: float = 0.0
    alias_priors: Dict[str, float] = field(default_factory=dict)

    def all_aliases(self) -> List[str]:
        """Name first, then aliases, without duplicates (after normalisation)."""
        seen: Dict[str, str] = {}
        for surface in (self.name, *self.aliases, *self.alias_priors):
            key = normalize_mention(surface)
            if key and key not in seen:
                seen[key] = surface
        return list(seen.values())

    def alias_weight(self, normalized_alias: str) -> float:
        """Weight of this entity for an alias key: the sum of the alias priors of
        its surface forms with that key ("LONDON" and "London" share one), or
        the entity's prior when no alias prior was given for that key."""
        matching = [w for surface, w in self.alias_priors.items() if normalize_mention(surface) == normalized_alias]
        return float(sum(matching)) if matching else float(self.prior)

    def to_json(self) -> Dict[str, Any]:
        """The JSONL object for this entity (empty optional fields omitted)."""
        record: Dict[str, Any] = {"id": self.id, "name": self.name}
        if self.aliases:
            record["aliases"] = list(self.aliases)
        if self.description:
            record["description"] = self.description
        if self.types:
            record["types"] = list(self.types)
        if self.prior:
            record["prior"] = self.prior
        if self.alias_priors:
            record["alias_priors"] = dict(self.alias_priors)
        return record


def entity_text(entity: Entity) -> str:
    """The text the bi-encoder embeds for an entity. The rule:

    1. a non-empty description exists -> ``"name: description"``
    2. otherwise, types exist          -> ``"name (type1, type2)"``
    3. otherwise                       -> ``"name"``

    Aliases are deliberately left out: they are matched by the candidate
    generators, and packing them into the text would make long alias lists
    dominate the embedding. Whitespace inside the parts is collapsed so that
    the same record always yields the same text (the embedding fingerprint
    depends on it).
    """
    name = " ".join(entity.name.split())
    description = " ".join((entity.description or "").split())
    if description:
        return f"{name}: {description}"
    types = [" ".join(t.split()) for t in entity.types if t.strip()]
    if types:
        return f"{name} ({', '.join(types)})"
    return name


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


def _fail(source: str, line: int, problem: str, fix: str) -> ValueError:
    return ValueError(f"{source}, line {line}: {problem}. Fix: {fix}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def entity_from_record(record: Any, source: str = "<record>", line: int = 0) -> Entity:
    """Validate one decoded JSON object and build an :class:`Entity`.

    Raises ValueError naming ``source`` and ``line`` and saying how to fix it.
    """
    if not isinstance(record, dict):
        raise _fail(source, line, f"expected a JSON object, got {type(record).__name__}",
                    "write one entity object per line, e.g. {\"id\": \"Q90\", \"name\": \"Paris\"}")
    unknown = sorted(set(record) - ALLOWED_KEYS)
    if unknown:
        raise _fail(source, line, f"unknown key(s) {unknown}",
                    f"use only {sorted(ALLOWED_KEYS)}")
    for key in ("id", "name"):
        if key not in record:
            raise _fail(source, line, f"missing required key '{key}'",
                        f"add a non-empty string '{key}' to this entity")
        value = record[key]
        if not isinstance(value, str):
            raise _fail(source, line, f"'{key}' must be a string, got {type(value).__name__} ({value!r})",
                        f"quote the {key}, e.g. \"{key}\": \"{value}\"")
        if not value.strip():
            raise _fail(source, line, f"'{key}' is empty", f"give a non-empty {key}")

    aliases = record.get("aliases", [])
    if aliases is None:
        aliases = []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise _fail(source, line, f"'aliases' must be a list of strings, got {aliases!r}",
                    "write \"aliases\": [\"alias one\", \"alias two\"] or leave it out")

    description = record.get("description")
    if description is not None and not isinstance(description, str):
        raise _fail(source, line, f"'description' must be a string or null, got {type(description).__name__}",
                    "write the description as a JSON string or leave it out")

    if "types" in record and "type" in record:
        raise _fail(source, line, "both 'types' and 'type' given", "keep only 'types' (a list)")
    types = record.get("types", record.get("type", []))
    if types is None:
        types = []
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise _fail(source, line, f"'types' must be a list of strings, got {types!r}",
                    "write \"types\": [\"person\"] or leave it out")

    prior = record.get("prior", 0.0)
    if not _is_number(prior) or prior < 0:
        raise _fail(source, line, f"'prior' must be a finite number >= 0, got {prior!r}",
                    "use a non-negative count or probability, or leave it out")

    alias_priors = record.get("alias_priors", {}) or {}
    if not isinstance(alias_priors, dict) or not all(
        isinstance(k, str) and _is_number(v) and v >= 0 for k, v in alias_priors.items()
    ):
        raise _fail(source, line, f"'alias_priors' must map strings to numbers >= 0, got {alias_priors!r}",
                    "write \"alias_priors\": {\"alias\": 3} or leave it out")

    return Entity(
        id=record["id"],
        name=record["name"],
        aliases=tuple(aliases),
        description=description if description and description.strip() else None,
        types=tuple(types),
        prior=float(prior),
        alias_priors={k: float(v) for k, v in alias_priors.items()},
    )


def iter_entities_jsonl(path: PathLike) -> Iterator[Tuple[int, Entity]]:
    """Stream ``(line_number, Entity)`` from a JSONL file, validating each line.

    Checks each record on its own; duplicate ids are a whole-file property and
    are checked by :func:`load_entities_jsonl` and by ``SQLiteKB.from_jsonl``.
    A last line that does not end in a newline and fails to parse is reported
    as truncated (the usual cause is an interrupted export).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Entity file not found: {path}")
    source = str(path)
    with path.open("r", encoding="utf-8") as handle:
        line_no = 0
        for raw in handle:
            line_no += 1
            text = raw.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                if not raw.endswith("\n"):
                    raise _fail(source, line_no,
                                f"last line is truncated (file ends mid-record: {err.msg} at column {err.colno})",
                                "re-export the file, or delete the incomplete last line") from None
                raise _fail(source, line_no, f"malformed JSON ({err.msg} at column {err.colno})",
                            "make this line a single valid JSON object") from None
            yield line_no, entity_from_record(record, source, line_no)


def load_entities_jsonl(path: PathLike) -> List[Entity]:
    """Read and validate a whole JSONL file; return entities in file order.

    Everything is validated before anything is returned, so callers never get
    a half-loaded KB.
    """
    entities: List[Entity] = []
    first_line: Dict[str, int] = {}
    for line_no, entity in iter_entities_jsonl(path):
        if entity.id in first_line:
            raise _fail(str(path), line_no,
                        f"duplicate id '{entity.id}' (first defined on line {first_line[entity.id]})",
                        "give every entity a unique id, or merge the two records")
        first_line[entity.id] = line_no
        entities.append(entity)
    return entities


def write_entities_jsonl(entities: Iterable[Entity], path: PathLike) -> int:
    """Write entities as JSONL (UTF-8, one per line); return the count."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for entity in entities:
            handle.write(json.dumps(entity.to_json(), ensure_ascii=False))
            handle.write("\n")
            count += 1
    return count


# --------------------------------------------------------------------------- #
# Import from spaCy's InMemoryLookupKB
# --------------------------------------------------------------------------- #


def read_descriptions_table(path: PathLike) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Read ``(descriptions, names)`` from a CSV (``.csv``) or TSV (other suffixes).

    Rows are ``id,description`` or ``id,name,description`` (the layout of
    spaCy's NEL tutorial ``entities.csv``). A first row whose first cell is
    ``id`` or ``qid`` (any case) is taken as a header and skipped. Rows with a
    different number of cells raise ValueError naming the line.
    """
    import csv

    path = Path(path)
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    descriptions: Dict[str, str] = {}
    names: Dict[str, str] = {}
    width: Optional[int] = None
    with path.open("r", encoding="utf-8", newline="") as handle:
        for row_no, row in enumerate(csv.reader(handle, delimiter=delimiter), start=1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if row_no == 1 and row[0].strip().lower() in {"id", "qid"}:
                continue
            if width is None:
                width = len(row)
                if width not in (2, 3):
                    raise _fail(str(path), row_no, f"expected 2 or 3 columns, got {width}",
                                "use id<sep>description or id<sep>name<sep>description")
            if len(row) != width:
                raise _fail(str(path), row_no, f"expected {width} columns like the first row, got {len(row)}",
                            "quote cells that contain the separator")
            entity_id = row[0].strip()
            if width == 3:
                names[entity_id] = row[1].strip()
            descriptions[entity_id] = row[-1].strip()
    return descriptions, names


def entities_from_spacy_kb(
    spacy_kb: Any,
    descriptions: Union[Mapping[str, str], PathLike, None] = None,
    names: Optional[Mapping[str, str]] = None,
) -> List[Entity]:
    """Convert a spaCy ``InMemoryLookupKB`` into entities.

    The spaCy KB stores ids, aliases with P(entity | alias) and frequencies but
    neither names nor descriptions, so:

    * ``descriptions`` is a dict id -> text or a CSV/TSV path (see
      :func:`read_descriptions_table`; a 3-column table also supplies names);
    * the name is ``names[id]`` if given, else the entity's alias with the
      highest prior, else the id itself;
    * ``alias_priors`` keep spaCy's P(entity | alias); ``prior`` is spaCy's
      entity frequency when the entity has at least one alias (spaCy exposes
      frequencies only through alias candidates), else 0.
    """
    table_names: Dict[str, str] = {}
    if descriptions is None:
        description_map: Mapping[str, str] = {}
    elif isinstance(descriptions, (str, Path)):
        description_map, table_names = read_descriptions_table(descriptions)
    else:
        description_map = descriptions
    name_map: Dict[str, str] = {**table_names, **(dict(names) if names else {})}

    alias_priors: Dict[str, Dict[str, float]] = {}
    frequencies: Dict[str, float] = {}
    for alias in spacy_kb.get_alias_strings():
        for candidate in spacy_kb.get_alias_candidates(alias):
            alias_priors.setdefault(candidate.entity_, {})[alias] = float(candidate.prior_prob)
            frequencies[candidate.entity_] = float(candidate.entity_freq)

    entities = []
    for entity_id in sorted(spacy_kb.get_entity_strings()):
        priors = alias_priors.get(entity_id, {})
        if entity_id in name_map and name_map[entity_id]:
            name = name_map[entity_id]
        elif priors:
            name = max(priors.items(), key=lambda item: (item[1], item[0]))[0]
        else:
            name = entity_id
        entities.append(
            Entity(
                id=entity_id,
                name=name,
                aliases=tuple(a for a in sorted(priors) if a != name),
                description=(description_map.get(entity_id) or None),
                prior=frequencies.get(entity_id, 0.0),
                alias_priors=priors,
            )
        )
    return entities
