"""Input corpora as shards, and the reading of one shard into chunks of texts.

A shard is the unit of output and of resumption: one input file (or, with ``shard_size``, one run
of ``shard_size`` consecutive lines or rows of it; for text files, one folder or ``shard_size`` of
its files). A chunk is the unit of annotation: up to ``batch_size`` consecutive valid records of one
shard. Both engines annotate exactly these chunks, each with one ``nlp.pipe`` batch, so the model
sees the same batches (and pads them the same way) whichever engine runs it.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
TEXT_SUFFIXES = (".txt",)


@dataclass(frozen=True)
class Fields:
    """Which fields of a JSONL object or columns of a Parquet table hold the text and the id."""

    text: str = "text"
    id: str = "id"


@dataclass(frozen=True)
class Shard:
    """``kind`` is "jsonl", "parquet" or "text"; ``start``/``stop`` select lines or rows (0-based,
    stop exclusive) of ``paths[0]``, or which of the text files in ``paths`` belong to it is
    already resolved (``paths`` holds exactly them; a text's id is its path below ``root`` without
the suffix). ``size`` counts input lines, rows or files."""

    name: str
    kind: str
    paths: Tuple[str, ...]
    start: int
    stop: int
    root: str = ""

    @property
    def size(self) -> int:
        return len(self.paths) if self.kind == "text" else self.stop - self.start


@dataclass(frozen=True)
class Reject:
    """An input record that was not annotated: where it is (``line``: 1-based line of a JSONL
    file, 1-based row of a Parquet file, 1 for a text file) and why."""

    file: str
    line: int
    reason: str

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "reason": self.reason}


@dataclass
class Chunk:
    """Up to ``batch_size`` valid records of shard number ``shard`` (``index`` counts the shard's
    chunks from 0) and the rejects met while reading them. The shard's last chunk has ``final``
    set, and ``count``, the shard's number of chunks. Once annotated, ``payloads`` holds one encoded
doc per text (see :mod:`.records`) and ``texts`` is emptied."""

    shard: int
    index: int
    lines: List[int] = field(default_factory=list)
    ids: List[str] = field(default_factory=list)
    texts: List[str] = field(default_factory=list)
    rejects: List[Reject] = field(default_factory=list)
    final: bool = False
    count: int = 0
    payloads: List[bytes] = field(default_factory=list)


def text_problem(value) -> Optional[str]:
    """Why ``value`` cannot be annotated as a document's text, or None if it can."""
    if value is None:
        return "missing text"
    if not isinstance(value, str):
        return f"text is not a string ({type(value).__name__})"
    if not value.strip():
        return "empty text"
    return None


def plan_shards(input_spec: str, shard_size: Optional[int] = None) -> List[Shard]:
    """The shards of ``input_spec``: a file, a folder (its .txt files, or else its JSONL and Parquet
    files) or a glob; named after each file's path below the inputs' common folder."""
    if shard_size is not None and shard_size < 1:
        raise ValueError(f"shard_size must be a positive number of records, got {shard_size!r}")
    files = input_files(input_spec)
    root = common_root(files)
    shards: List[Shard] = []
    text_groups = {}
    for path in files:
        if path.suffix.lower() in TEXT_SUFFIXES:
            text_groups.setdefault(path.parent, []).append(path)
        elif path.suffix.lower() in PARQUET_SUFFIXES:
            shards += split_records(path, "parquet", parquet_rows(path), shard_size, root)
        else:
            shards += split_records(path, "jsonl", count_lines(path), shard_size, root)
    for folder, paths in sorted(text_groups.items()):
        stem = shard_stem(folder, root) if folder != root else (folder.name or "texts")
        size = shard_size or len(paths)
        parts = [paths[i:i + size] for i in range(0, len(paths), size)]
        for number, part in enumerate(parts):
            name = stem if shard_size is None else f"{stem}-{number:05d}"
            shards.append(Shard(name, "text", tuple(str(p) for p in part), 0, len(part), str(root)))
    names = [shard.name for shard in shards]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise ValueError(f"two inputs would write the same output shard(s) {clashes}; rename or separate them")
    return shards


def input_files(input_spec: str) -> List[Path]:
    path = Path(input_spec)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not found:
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in JSONL_SUFFIXES + PARQUET_SUFFIXES)
    elif path.is_file():
        found = [path]
    else:
        found = sorted(Path(p) for p in glob.glob(input_spec, recursive=True) if Path(p).is_file())
    if not found:
        raise FileNotFoundError(f"no input files found at {input_spec!r} (a file, a folder of .txt/.jsonl/.parquet files, or a glob)")
    return [p.resolve() for p in found]


def common_root(files: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in files]))


def shard_stem(path: Path, root: Path) -> str:
    relative = path.relative_to(root)
    relative = relative.with_suffix("") if path.is_file() else relative
    return "__".join(relative.parts)


def split_records(path: Path, kind: str, total: int, shard_size: Optional[int], root: Path) -> List[Shard]:
    stem = shard_stem(path, root)
    if shard_size is None:
        return [Shard(stem, kind, (str(path),), 0, total)]
    return [Shard(f"{stem}-{number:05d}", kind, (str(path),), start, min(start + shard_size, total))
            for number, start in enumerate(range(0, max(total, 1), shard_size))]


def count_lines(path: Path) -> int:
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def read_chunks(shard: Shard, number: int, fields: Fields, batch_size: int) -> Iterator[Chunk]:
    """The chunks of shard number ``number``; always at least one (the final one), so every shard,
    even one without a valid record, reaches the writer."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    readers = {"jsonl": read_jsonl, "parquet": read_parquet, "text": read_texts}
    chunk = Chunk(number, 0)
    for item in readers[shard.kind](shard, fields):
        if isinstance(item, Reject):
            chunk.rejects.append(item)
            continue
        line, record_id, text = item
        chunk.lines.append(line)
        chunk.ids.append(record_id)
        chunk.texts.append(text)
        if len(chunk.texts) == batch_size:
            yield chunk
            chunk = Chunk(number, chunk.index + 1)
    # after a full last chunk this one is empty: it still carries the shard's final count
    chunk.final, chunk.count = True, chunk.index + 1
    yield chunk


def record_id(value, file: str, line: int) -> str:
    """The record's id as a string; a record without one is named by its place in the input."""
    if value is None or value == "":
        return f"{file}:{line}"
    return value if isinstance(value, str) else json.dumps(value)


def read_jsonl(shard: Shard, fields: Fields):
    path = shard.paths[0]
    with open(path, "rb") as handle:
        for line, raw in enumerate(handle, 1):
            if line <= shard.start:
                continue
            if line > shard.stop:
                break
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as error:  # UnicodeDecodeError is a ValueError too
                yield Reject(path, line, f"invalid JSON: {error}")
                continue
            if not isinstance(row, dict):
                yield Reject(path, line, f"not a JSON object ({type(row).__name__})")
                continue
            problem = text_problem(row.get(fields.text))
            if problem:
                yield Reject(path, line, f"{problem} (field {fields.text!r})")
                continue
            yield line, record_id(row.get(fields.id), path, line), row[fields.text]


def read_parquet(shard: Shard, fields: Fields):
    import pyarrow.parquet as pq

    path = shard.paths[0]
    table = pq.ParquetFile(path)
    names = table.schema_arrow.names
    if fields.text not in names:
        raise ValueError(f"{path}: no column {fields.text!r} for the text (columns: {names}); set the text field")
    columns = [fields.text] + ([fields.id] if fields.id in names else [])
    row = 0
    for batch in table.iter_batches(columns=columns, batch_size=4096):
        if row + batch.num_rows <= shard.start:
            row += batch.num_rows
            continue
        values = batch.to_pydict()
        ids = values.get(fields.id, [None] * batch.num_rows)
        for text, value in zip(values[fields.text], ids):
            row += 1
            if row <= shard.start:
                continue
            if row > shard.stop:
                return
            problem = text_problem(text)
            if problem:
                yield Reject(path, row, f"{problem} (column {fields.text!r})")
                continue
            yield row, record_id(value, path, row), text


def read_texts(shard: Shard, fields: Fields):
    for path in shard.paths:
        try:
            text = Path(path).read_text(encoding="utf8")
        except UnicodeDecodeError as error:
            yield Reject(path, 1, f"not UTF-8 text: {error}")
            continue
        problem = text_problem(text)
        if problem:
            yield Reject(path, 1, problem)
            continue
        yield 1, Path(path).relative_to(shard.root).with_suffix("").as_posix(), text
