"""The Ray engine: Ray Data reads the shards, a pool of actors (each loads the pipeline once)
annotates their chunks, and the driver writes the shards.

Plan: one block per shard -> ``flat_map`` reads a shard into chunk rows -> ``map_batches`` with
:class:`ChunkAnnotator` (``ActorPoolStrategy`` of ``workers`` actors, ``num_gpus`` each, one chunk
per call) -> the driver iterates the rows. Ray retries the read tasks and restarts lost actors
(Ray Data's actor pools restart actors and retry their calls), and a chunk's row reaches the
driver only from a call that completed, so a lost worker costs time, not records. The input must
be readable at the same path on every node (a shared or network filesystem, as for Ray's own
readers); the output is written by the driver only.
"""
from __future__ import annotations

import pickle
from typing import Iterator, List, Optional, Tuple

from .local_engine import annotate_chunk, load_pipeline, torch_threads
from .sources import Chunk, Fields, Shard, read_chunks


class ShardReader:
    """The read step: a shard-number row -> one row per chunk of that shard (pickled)."""

    def __init__(self, shards: List[Tuple[int, Shard]], fields: Fields, batch_size: int):
        self.shards = dict(shards)
        self.fields = fields
        self.batch_size = batch_size

    def __call__(self, row: dict) -> List[dict]:
        number = int(row["shard"])
        return [{"shard": number, "chunk": pickle.dumps(chunk)}
                for chunk in read_chunks(self.shards[number], number, self.fields, self.batch_size)]


class ChunkAnnotator:
    """The ``map_batches`` class: each actor loads the pipeline once, then annotates chunks."""

    def __init__(self, pipeline: str, payload: str, use_gpu: bool = False, threads: int = 1):
        self.nlp = load_pipeline(pipeline, 0 if use_gpu else None)  # Ray sets CUDA_VISIBLE_DEVICES per actor
        self.payload = payload
        self.threads = threads

    def __call__(self, batch: dict) -> dict:
        import numpy

        with torch_threads(self.threads):
            annotated = [pickle.dumps(annotate_chunk(self.nlp, pickle.loads(blob), self.payload))
                         for blob in batch["chunk"]]
        return {"shard": batch["shard"], "chunk": numpy.array(annotated, dtype=object)}


def connect(address: Optional[str]) -> bool:
    """Join the cluster at ``address`` ("auto": the one ``ray start`` runs here), use the one this
    process already joined, or start a local one. True when this call started or joined it (and
    so the run should leave it afterwards)."""
    import ray

    if ray.is_initialized():
        return False
    if address is None:
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return True


def run_ray(pipeline: str, shards: List[Tuple[int, Shard]], fields: Fields, payload: str, batch_size: int,
            workers: int = 1, gpus_per_worker: float = 0, cpus_per_worker: float = 1,
            address: Optional[str] = None, threads: Optional[int] = None) -> Iterator[Chunk]:
    """Annotated chunks of ``shards`` in the order they complete (not input order). Each actor
    runs torch with ``threads`` threads, by default as many as its CPUs."""
    import ray
    import ray.data

    joined = connect(address)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the run shows its own documents/s and ETA
        dataset = ray.data.from_items([{"shard": number} for number, _ in shards], override_num_blocks=len(shards))
        # Reading is light next to the model; it takes no CPU slot, so it never waits behind the
        # actors that hold them all.
        dataset = dataset.flat_map(ShardReader(shards, fields, batch_size), num_cpus=0)
        dataset = dataset.map_batches(
            ChunkAnnotator,
            fn_constructor_kwargs={"pipeline": pipeline, "payload": payload, "use_gpu": gpus_per_worker > 0,
                                   "threads": threads or max(1, int(cpus_per_worker))},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
        )
        for row in dataset.iter_rows():
            yield pickle.loads(row["chunk"])
    finally:
        if joined:
            ray.shutdown()
