"""Entity embedding store: computed once, stored beside the KB, memory-mapped on load.

The model is injected: ``encode(texts) -> float32 array (len(texts), dim)``.
This module never imports torch; the linker passes its bi-encoder's entity
encoder (and a string naming that encoder, e.g. the checkpoint path + its
hash) and gets back a row-aligned matrix: row ``i`` embeds
``entity_text(kb entity at row i)``.

Files written into the store directory:

* ``embeddings.npy``    float16 ``(n, dim)``, opened with ``mmap_mode="r"``;
* ``row_digests.npy``   uint8 ``(n, 16)``: a digest of (id, entity text) per row;
* ``embeddings.json``   encoder id, shape, KB content hash and ``fingerprint``
  (SHA-256 over the encoder id and all row digests).

Staleness: a store is valid for a KB and encoder only if the encoder id and
every row digest match. ``ensure_embeddings`` then re-encodes only what
changed (new rows appended to the KB, rows whose text changed); a different
encoder id re-encodes everything. ``EmbeddingStore.load`` refuses a stale
store with :class:`StaleEmbeddingsError` instead of silently using it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .base import KnowledgeBase, PathLike
from .dense import FaissIndex, top_k
from .entities import Entity, entity_text

EncodeFn = Callable[[List[str]], np.ndarray]
VECTORS_FILE = "embeddings.npy"
DIGESTS_FILE = "row_digests.npy"
META_FILE = "embeddings.json"
_DIGEST_BYTES = 16
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class StaleEmbeddingsError(ValueError):
    """The saved embeddings do not match the KB or the encoder."""


def row_digest(entity: Entity) -> bytes:
    """16-byte digest of what determines a row's embedding: its id and its text."""
    text = entity_text(entity)
    return hashlib.sha256(f"{entity.id}\x00{text}".encode("utf-8")).digest()[:_DIGEST_BYTES]


def kb_row_digests(kb: KnowledgeBase) -> np.ndarray:
    """Digests of every KB row, in row order (one streaming pass over the KB)."""
    digests = np.zeros((len(kb), _DIGEST_BYTES), dtype=np.uint8)
    for row, entity in enumerate(kb.iter_entities()):
        digests[row] = np.frombuffer(row_digest(entity), dtype=np.uint8)
    return digests


def fingerprint(encoder_id: str, digests: np.ndarray) -> str:
    h = hashlib.sha256(encoder_id.encode("utf-8") + b"\x00")
    h.update(np.ascontiguousarray(digests, dtype=np.uint8).tobytes())
    return h.hexdigest()


def _check_batch(vectors: object, n_texts: int, dim: Optional[int]) -> np.ndarray:
    """Validate what ``encode`` returned; errors say what was wrong with the encoder."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != n_texts:
        raise ValueError(f"encode() must return an array of shape ({n_texts}, dim) for {n_texts} texts, "
                         f"got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"encode() returned dim {array.shape[1]} but earlier batches had dim {dim}")
    if not np.all(np.isfinite(array)):
        raise ValueError("encode() returned NaN or infinite values")
    if np.abs(array).max(initial=0.0) > _FLOAT16_MAX:
        raise ValueError(f"encode() returned values above {_FLOAT16_MAX:.0f}, which float16 storage "
                         "cannot hold; normalise the embeddings")
    return array


class EmbeddingStore:
    """Row-aligned float16 entity embeddings plus their fingerprint."""

    # float16 -> float32 conversion costs far more than the matrix product
    # (~0.25 s per 25M values on a plain CPU), so a store that fits in this
    # budget is converted once and kept as float32; larger stores are
    # converted chunk by chunk on every search, keeping memory bounded.
    DEFAULT_FLOAT32_CACHE_BYTES = 1 << 30

    def __init__(self, path: Path, vectors: np.ndarray, digests: np.ndarray, encoder_id: str,
                 kb_content_hash: str, float32_cache_bytes: int = DEFAULT_FLOAT32_CACHE_BYTES) -> None:
        self.path = path
        self.vectors = vectors
        self.digests = digests
        self.encoder_id = encoder_id
        self.kb_content_hash = kb_content_hash
        self.float32_cache_bytes = float32_cache_bytes
        self._float32: Optional[np.ndarray] = None
        self._faiss: Optional[FaissIndex] = None

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.encoder_id, self.digests)

    # -- loading ---------------------------------------------------------- #
    @classmethod
    def load(cls, path: PathLike, kb: Optional[KnowledgeBase] = None, encoder_id: Optional[str] = None,
             mmap: bool = True, float32_cache_bytes: int = DEFAULT_FLOAT32_CACHE_BYTES) -> "EmbeddingStore":
        """Open a saved store (memory-mapped by default).

        With ``kb`` and/or ``encoder_id`` given, raise StaleEmbeddingsError
        unless the store matches them. The check is free when the KB's content
        hash is unchanged; otherwise it recomputes the row digests.
        """
        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} not found: no embedding store in {path}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        vectors = np.load(path / VECTORS_FILE, mmap_mode="r" if mmap else None)
        digests = np.load(path / DIGESTS_FILE)
        store = cls(path, vectors, digests, meta["encoder_id"], meta["kb_content_hash"], float32_cache_bytes)
        if store.fingerprint != meta["fingerprint"] or vectors.shape[0] != digests.shape[0]:
            raise StaleEmbeddingsError(f"{path}: files are inconsistent with {META_FILE} (partly overwritten?); "
                                       "rebuild with ensure_embeddings()")
        if encoder_id is not None and encoder_id != store.encoder_id:
            raise StaleEmbeddingsError(f"{path}: embeddings were made by encoder {store.encoder_id!r}, "
                                       f"not {encoder_id!r}; rebuild with ensure_embeddings()")
        if kb is not None and kb.content_hash != store.kb_content_hash:
            current = kb_row_digests(kb)
            if current.shape != digests.shape or not np.array_equal(current, digests):
                changed = _changed_rows(digests, current)
                raise StaleEmbeddingsError(
                    f"{path}: embeddings are stale for this knowledge base ({len(changed)} of {len(kb)} rows "
                    "new or changed); update them with ensure_embeddings()")
        return store

    # -- search ----------------------------------------------------------- #
    def search_matrix(self) -> np.ndarray:
        """The matrix searched: a float32 copy if it fits the cache budget, else the float16 map."""
        if self._float32 is None and len(self) * self.dim * 4 <= self.float32_cache_bytes:
            self._float32 = np.asarray(self.vectors, dtype=np.float32)
        return self._float32 if self._float32 is not None else self.vectors

    def search(self, queries: np.ndarray, k: int, backend: str = "numpy",
               chunk_size: int = 65_536) -> Tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product: ``(scores, rows)`` shaped ``(n_queries, k)``.

        Batch the queries of a document into one call when possible: the
        matrix is read once per call, whatever the number of queries.
        """
        if backend == "faiss" and self._faiss is None:
            self._faiss = FaissIndex(self.vectors, chunk_size)
        return top_k(self.search_matrix(), queries, k, backend, chunk_size, self._faiss)


def _changed_rows(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Rows of ``new`` whose embedding cannot be reused from ``old``."""
    shared = min(old.shape[0], new.shape[0])
    differs = np.any(old[:shared] != new[:shared], axis=1)
    return np.concatenate([np.flatnonzero(differs), np.arange(shared, new.shape[0])])


def _iter_texts_at(kb: KnowledgeBase, rows: np.ndarray) -> Iterator[Tuple[int, str]]:
    wanted = np.zeros(len(kb), dtype=bool)
    wanted[rows] = True
    for row, entity in enumerate(kb.iter_entities()):
        if wanted[row]:
            yield row, entity_text(entity)


def ensure_embeddings(path: PathLike, kb: KnowledgeBase, encode: EncodeFn, encoder_id: str,
                      batch_size: int = 256, progress: bool = True,
                      chunk_size: int = 65_536) -> EmbeddingStore:
    """Return an up-to-date store for ``kb`` at ``path``, encoding only what is missing.

    * fresh store (same encoder id, same KB content): loaded, nothing encoded;
    * same encoder, KB grew or some texts changed: unchanged rows are copied,
      only new/changed rows are encoded;
    * different encoder id, no store, or a damaged store: everything is encoded.

    Writes go to ``*.partial`` files renamed at the end, so an interrupted run
    leaves the previous store intact.
    """
    from tqdm import tqdm

    path = Path(path)
    old: Optional[EmbeddingStore] = None
    if (path / META_FILE).exists():
        try:
            old = EmbeddingStore.load(path)
        except (StaleEmbeddingsError, OSError, ValueError, KeyError):
            old = None  # damaged store: rebuild from scratch
    if old is not None and old.encoder_id == encoder_id and old.kb_content_hash == kb.content_hash:
        return old
    if old is not None and old.encoder_id != encoder_id:
        old = None

    digests = kb_row_digests(kb)
    if old is not None:
        todo = _changed_rows(old.digests, digests)
        dim: Optional[int] = old.dim
    else:
        todo = np.arange(len(kb))
        dim = None

    path.mkdir(parents=True, exist_ok=True)
    partial = path / (VECTORS_FILE + ".partial")
    out: Optional[np.ndarray] = None

    def open_output(width: int) -> np.ndarray:
        matrix = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(len(kb), width))
        if old is not None:
            reusable = min(len(old), len(kb))
            for start in range(0, reusable, chunk_size):
                matrix[start : min(start + chunk_size, reusable)] = old.vectors[start : min(start + chunk_size, reusable)]
        return matrix

    if dim is not None:
        out = open_output(dim)
    bar = tqdm(total=len(todo), desc="Encoding entities", unit="ent", disable=not progress)
    batch_rows: List[int] = []
    batch_texts: List[str] = []

    def flush() -> None:
        nonlocal out, dim
        if not batch_texts:
            return
        vectors = _check_batch(encode(list(batch_texts)), len(batch_texts), dim)
        if out is None:
            dim = int(vectors.shape[1])
            out = open_output(dim)
        out[np.asarray(batch_rows)] = vectors.astype(np.float16)
        bar.update(len(batch_texts))
        batch_rows.clear()
        batch_texts.clear()

    try:
        for row, text in _iter_texts_at(kb, todo):
            batch_rows.append(row)
            batch_texts.append(text)
            if len(batch_texts) >= batch_size:
                flush()
        flush()
    finally:
        bar.close()
    if out is None:
        # Empty KB: nothing was ever encoded, so the width is unknown; store (0, 0).
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(0, 0))
    out.flush()
    del out
    if old is not None:
        del old  # release the memory map before replacing the file it maps
    np.save(path / (DIGESTS_FILE + ".partial.npy"), digests)
    os.replace(partial, path / VECTORS_FILE)
    os.replace(path / (DIGESTS_FILE + ".partial.npy"), path / DIGESTS_FILE)
    meta = {"encoder_id": encoder_id, "rows": len(kb), "dim": int(dim or 0), "dtype": "float16",
            "kb_content_hash": kb.content_hash, "fingerprint": fingerprint(encoder_id, digests), "version": 1}
    (path / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return EmbeddingStore.load(path)


def encode_texts(encode: EncodeFn, texts: Sequence[str]) -> np.ndarray:
    """Encode query texts with the same validation as entity batches."""
    return _check_batch(encode(list(texts)), len(texts), None)
