"""Top-k inner-product search over an entity embedding matrix.

The exact numpy path walks the (possibly memory-mapped float16) matrix in
fixed-size chunks, so peak memory is ``chunk_size * dim * 4`` bytes plus the
score block, whatever the KB size. FAISS is optional: it is imported only when
``backend="faiss"`` is asked for, and only an exact ``IndexFlatIP`` is built,
so both backends return the same neighbours (up to float ties).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    queries = np.asarray(queries, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None, :]
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"query embeddings must have shape (n, {dim}) or ({dim},), got {queries.shape}")
    return queries


def _merge_top_k(best_scores: np.ndarray, best_rows: np.ndarray, scores: np.ndarray, rows: np.ndarray,
                 k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Keep the k best of two (q, *) candidate sets; ties broken by smaller row."""
    all_scores = np.concatenate([best_scores, scores], axis=1)
    all_rows = np.concatenate([best_rows, rows], axis=1)
    # lexsort sorts by the last key first: score descending, then row ascending.
    order = np.lexsort((all_rows, -all_scores), axis=1)[:, :k]
    return np.take_along_axis(all_scores, order, 1), np.take_along_axis(all_rows, order, 1)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int,
                chunk_size: int = 65_536) -> Tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``vectors`` by inner product with each query.

    Returns ``(scores, rows)``, both shaped ``(n_queries, min(k, n_rows))``,
    best first; ties go to the smaller row so results are deterministic.
    """
    n_rows, dim = vectors.shape
    queries = _as_queries(queries, dim)
    k = min(k, n_rows)
    best_scores = np.full((queries.shape[0], 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((queries.shape[0], 0), dtype=np.int64)
    if k <= 0:
        return best_scores, best_rows
    for start in range(0, n_rows, chunk_size):
        block = np.asarray(vectors[start : start + chunk_size], dtype=np.float32)
        scores = queries @ block.T
        if scores.shape[1] > k:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores = np.take_along_axis(scores, part, 1)
            rows = part + start
        else:
            rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        best_scores, best_rows = _merge_top_k(best_scores, best_rows, scores, rows.astype(np.int64), k)
    return best_scores, best_rows


class FaissIndex:
    """Exact inner-product FAISS index (``IndexFlatIP``) over an embedding matrix.

    Holds a float32 copy of the vectors in FAISS's memory; worth it for many
    queries against a large KB. Requires ``pip install spacy-gliner[faiss]``.
    """

    def __init__(self, vectors: np.ndarray, chunk_size: int = 65_536) -> None:
        self._build(int(vectors.shape[1]), (vectors[start : start + chunk_size] for start in range(0, vectors.shape[0], chunk_size)))

    @classmethod
    def from_chunks(cls, dim: int, chunks) -> "FaissIndex":
        """An index filled from an iterable of (n, dim) blocks, never holding them all at once."""
        index = cls.__new__(cls)
        index._build(dim, chunks)
        return index

    def _build(self, dim: int, chunks) -> None:
        faiss = _import_faiss()
        self.dim = dim
        self._index: Any = faiss.IndexFlatIP(dim)
        for block in chunks:
            self._index.add(np.ascontiguousarray(block, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        queries = _as_queries(queries, self.dim)
        k = min(k, self._index.ntotal)
        if k <= 0:
            return np.zeros((queries.shape[0], 0), np.float32), np.zeros((queries.shape[0], 0), np.int64)
        scores, rows = self._index.search(np.ascontiguousarray(queries), k)
        return scores, rows.astype(np.int64)


def _import_faiss() -> Any:
    try:
        import faiss  # noqa: F401  (optional extra, imported only on demand)
    except ImportError as err:
        raise ImportError(
            "backend='faiss' needs the optional FAISS package: pip install 'spacy-gliner[faiss]' "
            "(or use backend='numpy', the exact chunked search that needs nothing extra)"
        ) from err
    return faiss


def top_k(vectors: np.ndarray, queries: np.ndarray, k: int, backend: str = "numpy",
          chunk_size: int = 65_536, faiss_index: Optional[FaissIndex] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Dispatch to the numpy or FAISS search (see module docstring)."""
    if backend == "numpy":
        return exact_top_k(vectors, queries, k, chunk_size)
    if backend == "faiss":
        index = faiss_index if faiss_index is not None else FaissIndex(vectors, chunk_size)
        return index.search(queries, k)
    raise ValueError(f"unknown dense search backend {backend!r}: use 'numpy' or 'faiss'")
