"""The local engine: ``nlp.pipe`` on this machine, one or several processes."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterable, Iterator, List, Optional, Tuple

from .records import encode
from .sources import Chunk, Fields, Shard, read_chunks


@contextmanager
def torch_threads(threads: Optional[int]):
    """Torch runs ``threads`` threads inside the block (unchanged when None), as before after it.

    The thread count is part of the result: torch splits a batch's matrix products by thread,
    which changes the last bits of the scores, so two runs give the same records only with the
    same number of threads per worker."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def spawned_workers(threads: Optional[int]):
    """``nlp.pipe(n_process=...)`` starts its workers with ``spawn`` inside the block: a worker
    forked from a process whose torch thread pool already ran can hang for ever. ``threads`` reaches
    the fresh workers through ``OMP_NUM_THREADS``."""
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True)
    variable = os.environ.get("OMP_NUM_THREADS")
    multiprocessing.set_start_method("spawn", force=True)
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        multiprocessing.set_start_method(method, force=True)
        if threads is not None:
            if variable is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = variable


def load_pipeline(pipeline: str, gpu_id: Optional[int] = None):
    """The pipeline, on GPU ``gpu_id`` when given (spaCy's ``require_gpu``: the gliner components
    follow spaCy's device)."""
    import spacy

    if gpu_id is not None:
        spacy.require_gpu(gpu_id)
    return spacy.load(pipeline)


def annotate_chunk(nlp, chunk: Chunk, payload: str) -> Chunk:
    """The chunk's texts as one ``nlp.pipe`` batch, encoded into ``chunk.payloads``."""
    docs = nlp.pipe(chunk.texts, batch_size=max(len(chunk.texts), 1))
    return finish_chunk(chunk, docs, payload)


def finish_chunk(chunk: Chunk, docs: Iterable, payload: str) -> Chunk:
    chunk.payloads = [encode(doc, record_id, payload) for doc, record_id in zip(docs, chunk.ids)]
    if len(chunk.payloads) != len(chunk.ids):
        raise RuntimeError(f"the pipeline returned {len(chunk.payloads)} docs for {len(chunk.ids)} texts")
    chunk.texts = []
    return chunk


def run_local(pipeline: str, shards: List[Tuple[int, Shard]], fields: Fields, payload: str, batch_size: int,
              n_process: int = 1, gpu_id: Optional[int] = None, threads: Optional[int] = None) -> Iterator[Chunk]:
    """Annotated chunks of ``shards`` (pairs of shard number and shard), in input order.

    With ``n_process`` > 1 each shard is one ``nlp.pipe(n_process=...)`` call: spaCy cuts its
    text stream into consecutive batches of ``batch_size``, exactly the chunks, so the model sees
    the batches it sees with one process or on Ray. Its worker processes start once per shard,
    so shards should hold many batches. ``threads``: torch threads per process (default: torch's).
    """
    nlp = load_pipeline(pipeline, gpu_id)
    for number, shard in shards:
        chunks = read_chunks(shard, number, fields, batch_size)
        if n_process == 1:
            for chunk in chunks:
                with torch_threads(threads):
                    annotated = annotate_chunk(nlp, chunk, payload)
                yield annotated
            continue
        chunks = list(chunks)
        with spawned_workers(threads):
            docs = nlp.pipe((text for chunk in chunks for text in chunk.texts), batch_size=batch_size,
                            n_process=n_process)
            annotated = [finish_chunk(chunk, (next(docs) for _ in chunk.texts), payload) for chunk in chunks]
        yield from annotated
