"""Output shards, written atomically, and the manifest that makes runs resumable.

A shard's file is written under a temporary name and moved into place with ``os.replace`` once
complete, so an output file is never partial. A shard is finished when the manifest
(``MANIFEST``, one JSON line per finished shard, appended after the move) names it; a re-run skips
exactly those. A run killed between the move and the manifest line redoes that shard and
replaces the file with the same records, so every id still appears once. ``REJECTS`` lists the
rejected input records of every finished shard; it is rebuilt from the manifest after each run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

from .records import DOCS, RECORDS, decode_doc, decode_record
from .sources import Reject

MANIFEST = "annotate-manifest.jsonl"
SETTINGS = "annotate-settings.json"
REJECTS = "rejects.jsonl"
TEMPORARY_MARK = ".partial-"
FORMATS = {"jsonl": ".jsonl", "parquet": ".parquet", "docbin": ".spacy"}


def payload_kind(output_format: str) -> str:
    if output_format not in FORMATS:
        raise ValueError(f"output format must be one of {sorted(FORMATS)}, got {output_format!r}")
    return DOCS if output_format == "docbin" else RECORDS


def shard_file(directory: Path, name: str, output_format: str) -> Path:
    return directory / f"{name}{FORMATS[output_format]}"


def replace_atomically(final: Path, write) -> None:
    """``write(path)`` fills a temporary file next to ``final``, which then takes its place."""
    temporary = final.with_name(f"{TEMPORARY_MARK}{os.getpid()}-{final.name}")
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    finally:
        if temporary.exists():
            temporary.unlink()


def remove_partial_files(directory: Path) -> None:
    """Temporary files a killed run left behind."""
    for leftover in directory.glob(f"{TEMPORARY_MARK}*"):
        leftover.unlink()


def record_schema():
    import pyarrow as pa

    entity = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()), ("text", pa.string()),
                        ("score", pa.float64()), ("kb_id", pa.string())])
    relation = pa.struct([("head_start", pa.int64()), ("head_end", pa.int64()), ("tail_start", pa.int64()),
                          ("tail_end", pa.int64()), ("label", pa.string()), ("score", pa.float64())])
    return pa.schema([("id", pa.string()), ("entities", pa.list_(entity)), ("relations", pa.list_(relation))])


def write_shard(directory: Path, name: str, output_format: str, payloads: Sequence[bytes]) -> Path:
    """The shard's payloads (in input order) as one file of ``output_format``."""
    final = shard_file(directory, name, output_format)
    if output_format == "jsonl":
        def write(path):
            with open(path, "wb") as handle:
                for payload in payloads:
                    handle.write(payload + b"\n")
    elif output_format == "parquet":
        def write(path):
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist([decode_record(p) for p in payloads], schema=record_schema())
            pq.write_table(table, path)
    else:
        def write(path):
            from spacy.tokens import DocBin

            docs = DocBin(store_user_data=True)
            for payload in payloads:
                docs.add(decode_doc(payload))
            path.write_bytes(docs.to_bytes())
    replace_atomically(final, write)
    return final


def read_manifest(directory: Path) -> Dict[str, dict]:
    """shard name -> its manifest entry. A torn last line (a run killed while appending) is
    ignored: that shard is simply not finished."""
    path = directory / MANIFEST
    entries: Dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            entries[entry["shard"]] = entry
    return entries


def mark_finished(directory: Path, name: str, output: Path, records: int, rejects: Iterable[Reject]) -> None:
    entry = {"shard": name, "output": output.name, "records": records, "rejects": [r.to_dict() for r in rejects]}
    path = directory / MANIFEST
    with open(path, "ab") as handle:
        if handle.tell():
            with open(path, "rb") as existing:  # a torn line left by a killed run must not swallow ours
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":
                    handle.write(b"\n")
        handle.write(json.dumps(entry, ensure_ascii=False).encode("utf8") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_rejects(directory: Path, shard_order: Sequence[str]) -> List[dict]:
    """``REJECTS`` from the manifest, in input order; returns its rows."""
    manifest = read_manifest(directory)
    rows = [reject for name in shard_order if name in manifest for reject in manifest[name]["rejects"]]

    def write(path):
        with open(path, "w", encoding="utf8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    replace_atomically(directory / REJECTS, write)
    return rows


def check_settings(directory: Path, settings: dict) -> None:
    """An output folder holds one run's shards: resuming it with other inputs, fields, sharding or
    format would mix incompatible shards, so it is refused."""
    path = directory / SETTINGS
    if path.exists():
        before = json.loads(path.read_text(encoding="utf8"))
        changed = sorted(key for key in set(before) | set(settings) if before.get(key) != settings.get(key))
        if changed:
            raise ValueError(f"{directory} holds a run with other settings ({', '.join(changed)}); "
                             "resume it with the same ones or write to a new output folder")
        return

    def write(temporary):
        temporary.write_text(json.dumps(settings, indent=2), encoding="utf8")

    replace_atomically(path, write)
