"""The local engine: ``nlp.pipe`` on this machine, one or several processes."""
from __future__ import annotations

from collections import deque
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

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
def worker_pool(pipeline: str, n_process: int, threads: Optional[int], gpu_id: Optional[int]):
    """``n_process`` spawned processes, each holding the pipeline loaded once for the whole run.

    Spawned, not forked: a worker forked from a process whose torch thread pool already ran can
    hang for ever. A worker that dies breaks the pool (``BrokenProcessPool``) instead of leaving a
    chunk waiting for ever; the shards finished before it are kept, so a re-run completes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n_process, mp_context=context, initializer=start_worker,
                             initargs=(pipeline, threads, gpu_id)) as pool:
        yield pool


_worker_nlp = None  # the pipeline of this worker process, set once by start_worker


def start_worker(pipeline: str, threads: Optional[int], gpu_id: Optional[int]) -> None:
    global _worker_nlp
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    _worker_nlp = load_pipeline(pipeline, gpu_id)


def annotate_in_worker(chunk: Chunk, payload: str) -> Chunk:
    return annotate_chunk(_worker_nlp, chunk, payload)


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
    chunk.payloads = [encode(doc, record_id, payload) for doc, record_id in zip(docs, chunk.ids)]
    if len(chunk.payloads) != len(chunk.ids):
        raise RuntimeError(f"the pipeline returned {len(chunk.payloads)} docs for {len(chunk.ids)} texts")
    chunk.texts = []
    return chunk


def run_local(pipeline: str, shards: List[Tuple[int, Shard]], fields: Fields, payload: str, batch_size: int,
              n_process: int = 1, gpu_id: Optional[int] = None, threads: Optional[int] = None) -> Iterator[Chunk]:
    """Annotated chunks of ``shards`` (pairs of shard number and shard), in input order.

    Every chunk is one ``nlp.pipe`` batch, in this process or, with ``n_process`` > 1, in one of
    ``n_process`` worker processes started once per run (as the Ray engine's actors are), so
    the model sees the same batches either way. At most two chunks per worker are in flight, so
    memory stays flat however large the input. ``threads``: torch threads per process (default:
    torch's).
    """
    chunks = (chunk for number, shard in shards for chunk in read_chunks(shard, number, fields, batch_size))
    if n_process == 1:
        nlp = load_pipeline(pipeline, gpu_id)
        for chunk in chunks:
            with torch_threads(threads):
                annotated = annotate_chunk(nlp, chunk, payload)
            yield annotated
        return
    from concurrent.futures.process import BrokenProcessPool

    in_flight = deque()
    try:
        with worker_pool(pipeline, n_process, threads, gpu_id) as pool:
            for chunk in chunks:
                in_flight.append(pool.submit(annotate_in_worker, chunk, payload))
                if len(in_flight) >= 2 * n_process:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
    except BrokenProcessPool as error:
        raise RuntimeError(
            "a local worker process ended abruptly (killed, out of memory, or its pipeline failed to load: see its "
            "error above); the shards finished before "
            "it are kept: run the same command again to annotate the rest") from error
