"""``annotate``: a corpus in, annotated shards out, on either engine, resumably."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

from .outputs import (check_settings, mark_finished, payload_kind, read_manifest, remove_partial_files,
                      write_rejects, write_shard)
from .sources import Chunk, Fields, Shard, plan_shards

logger = logging.getLogger("spacy_gliner.annotate")

ENGINES = ("local", "ray")


@dataclass
class RunSummary:
    """What one run did: shards written now and skipped as already finished, records written,
    rejects (of the shards written now), and the output folder."""

    output: Path
    written: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    records: int = 0
    rejects: List[dict] = field(default_factory=list)


class ShardAssembler:
    """Collects annotated chunks, which may arrive in any order, and writes each shard once all
    its chunks are in. A chunk seen twice (never expected: engines hand on completed work once)
    is kept once, so a shard can never hold a record twice."""

    def __init__(self, shards: Dict[int, Shard], output: Path, output_format: str, summary: RunSummary, progress):
        self.shards, self.output, self.format = shards, output, output_format
        self.summary, self.progress = summary, progress
        self.pending: Dict[int, Dict[int, Chunk]] = {}
        self.counts: Dict[int, int] = {}

    def add(self, chunk: Chunk) -> None:
        received = self.pending.setdefault(chunk.shard, {})
        if chunk.index in received:
            return
        received[chunk.index] = chunk
        for reject in chunk.rejects:
            logger.warning("rejected %s:%d: %s", reject.file, reject.line, reject.reason)
        self.progress.update(len(chunk.payloads) + len(chunk.rejects))
        if chunk.final:
            self.counts[chunk.shard] = chunk.count
        if self.counts.get(chunk.shard) == len(received):
            self.write(chunk.shard)

    def write(self, number: int) -> None:
        chunks = [chunk for _, chunk in sorted(self.pending.pop(number).items())]
        shard = self.shards[number]
        payloads = [payload for chunk in chunks for payload in chunk.payloads]
        rejects = [reject for chunk in chunks for reject in chunk.rejects]
        path = write_shard(self.output, shard.name, self.format, payloads)
        mark_finished(self.output, shard.name, path, len(payloads), rejects)
        self.progress.update(shard.size - sum(len(c.payloads) + len(c.rejects) for c in chunks))  # blank lines
        self.summary.written.append(shard.name)
        self.summary.records += len(payloads)
        self.summary.rejects += [reject.to_dict() for reject in rejects]


def annotate(pipeline: Union[str, Path], input: Union[str, Path], output: Union[str, Path], *,
             engine: str = "local", output_format: str = "jsonl", text_field: str = "text", id_field: str = "id",
             shard_size: Optional[int] = None, batch_size: int = 32, n_process: int = 1, gpu_id: Optional[int] = None, threads: Optional[int] = None,
             address: Optional[str] = None, workers: int = 1, gpus_per_worker: float = 0, cpus_per_worker: float = 1,
             show_progress: bool = True) -> RunSummary:
    """Annotate every record of ``input`` with the pipeline ``pipeline`` (a directory or package
    name) into ``output`` (a folder): one file per input shard, in ``output_format`` ("jsonl",
    "parquet" or "docbin"), plus the manifest and ``rejects.jsonl``.

    Shards the output folder already holds as finished are skipped, so running the same call
    again after an interruption completes the run: every input id ends up exactly once.
    ``engine="local"`` uses ``nlp.pipe`` (``n_process``, ``gpu_id``); ``engine="ray"`` uses Ray
    Data on the cluster at ``address`` (or the one this process joined, or a new local one) with
    ``workers`` actors of ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs. ``batch_size``
    documents form one model batch on both engines, and ``threads`` sets torch's threads per
    worker (local process or actor; default: torch's default locally, ``cpus_per_worker`` on Ray):
    runs with the same batch size and threads per worker give the same records, byte for byte.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    for name, value in (("batch_size", batch_size), ("n_process", n_process), ("workers", workers),
                        ("threads", 1 if threads is None else threads)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    payload = payload_kind(output_format)
    fields = Fields(text=text_field, id=id_field)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    shards = plan_shards(str(input), shard_size)
    check_settings(output, {"input": str(input), "text_field": text_field, "id_field": id_field,
                            "shard_size": shard_size, "format": output_format, "pipeline": str(pipeline)})
    remove_partial_files(output)
    finished = read_manifest(output)
    summary = RunSummary(output=output, skipped=[s.name for s in shards if s.name in finished])
    todo = [(number, shard) for number, shard in enumerate(shards) if shard.name not in finished]
    if summary.skipped:
        logger.info("%d of %d shards already finished in %s; annotating the other %d",
                    len(summary.skipped), len(shards), output, len(todo))
    if todo:
        progress = make_progress(sum(shard.size for _, shard in todo), engine, show_progress)
        assembler = ShardAssembler(dict(todo), output, output_format, summary, progress)
        if engine == "local":
            from .local_engine import run_local

            chunks = run_local(str(pipeline), todo, fields, payload, batch_size, n_process, gpu_id, threads)
        else:
            from .ray_engine import run_ray

            chunks = run_ray(str(pipeline), todo, fields, payload, batch_size, workers, gpus_per_worker,
                             cpus_per_worker, address, threads)
        try:
            for chunk in chunks:
                assembler.add(chunk)
        finally:
            progress.close()
        written = set(summary.written)
        missing = [shard.name for _, shard in todo if shard.name not in written]
        if missing:
            raise RuntimeError(f"the {engine} engine ended without finishing shard(s) {missing}")
    write_rejects(output, [shard.name for shard in shards])
    return summary


def make_progress(total: int, engine: str, show: bool):
    """Documents/s and the ETA (tqdm), on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, unit="doc", desc=f"annotate ({engine})", disable=not show, file=sys.stderr,
                smoothing=0.1, dynamic_ncols=True)
