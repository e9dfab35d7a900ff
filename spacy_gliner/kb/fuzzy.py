"""Character n-gram TF-IDF index over KB aliases, stored as compact numpy CSR arrays.

Why this design: fuzzy lookup must stay fast at 100k-1M+ entities without
pulling the KB into memory. Each normalised alias becomes a binary vector of
hashed character trigrams weighted by IDF; similarity is cosine. The inverted
index (bucket -> alias ids) is a CSR pair ``indptr``/``postings``; a query
touches only the posting lists of its own grams and accumulates scores with
``np.bincount``. Saved as ``.npy`` files and memory-mapped on load, so a big
index costs page cache, not process heap.

Grams are hashed with CRC32 (stable across processes, unlike ``hash``) into
``n_buckets`` buckets; with the default 2**20 buckets collisions are rare and
only ever add a little noise to scores.
"""
from __future__ import annotations

import json
import zlib
from array import array
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .base import KnowledgeBase, PathLike
from .normalize import char_ngrams, normalize_mention

INDEX_META = "fuzzy_index.json"
_ARRAYS = ("indptr", "postings", "alias_rows", "alias_norms", "idf")


def _buckets(normalized: str, n: int, n_buckets: int) -> List[int]:
    mask = n_buckets - 1
    return sorted({zlib.crc32(g.encode("utf-8")) & mask for g in char_ngrams(normalized, n)})


class FuzzyIndex:
    """Trigram TF-IDF cosine search from a mention to KB rows."""

    def __init__(self, arrays: Dict[str, np.ndarray], ngram: int, n_buckets: int,
                 kb_content_hash: str, kb_size: int) -> None:
        self.indptr = arrays["indptr"]
        self.postings = arrays["postings"]
        self.alias_rows = arrays["alias_rows"]
        self.alias_norms = arrays["alias_norms"]
        self.idf = arrays["idf"]
        self.ngram = ngram
        self.n_buckets = n_buckets
        self.kb_content_hash = kb_content_hash
        self.kb_size = kb_size

    @property
    def n_aliases(self) -> int:
        return int(self.alias_rows.shape[0])

    # -- building --------------------------------------------------------- #
    @classmethod
    def build(cls, kb: KnowledgeBase, ngram: int = 3, n_buckets: int = 1 << 20) -> "FuzzyIndex":
        """Index every (normalised alias, row) pair of ``kb`` in one streaming pass."""
        if n_buckets & (n_buckets - 1):
            raise ValueError(f"n_buckets must be a power of two, got {n_buckets}")
        pair_buckets = array("i")
        pair_aliases = array("i")
        alias_rows = array("i")
        for alias, row in kb.iter_alias_rows():
            alias_id = len(alias_rows)
            alias_rows.append(row)
            grams = _buckets(alias, ngram, n_buckets)
            pair_buckets.extend(grams)
            pair_aliases.extend([alias_id] * len(grams))
        buckets = np.frombuffer(pair_buckets, dtype=np.int32) if pair_buckets else np.zeros(0, np.int32)
        aliases = np.frombuffer(pair_aliases, dtype=np.int32) if pair_aliases else np.zeros(0, np.int32)
        n_aliases = len(alias_rows)

        order = np.argsort(buckets, kind="stable")
        postings = aliases[order].astype(np.int32)
        df = np.bincount(buckets, minlength=n_buckets)
        indptr = np.zeros(n_buckets + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        # Smoothed IDF (as in scikit-learn's smooth_idf): never zero, never inf.
        idf = (np.log((n_aliases + 1) / (df + 1.0)) + 1.0).astype(np.float32)
        squared = np.bincount(aliases, weights=idf[buckets].astype(np.float64) ** 2, minlength=n_aliases)
        alias_norms = np.sqrt(squared).astype(np.float32)
        arrays = {
            "indptr": indptr,
            "postings": postings,
            "alias_rows": np.asarray(alias_rows, dtype=np.int32) if n_aliases else np.zeros(0, np.int32),
            "alias_norms": alias_norms,
            "idf": idf,
        }
        return cls(arrays, ngram, n_buckets, kb.content_hash, len(kb))

    def is_stale_for(self, kb: KnowledgeBase) -> bool:
        """True if ``kb`` changed since this index was built (compares content hashes)."""
        return self.kb_content_hash != kb.content_hash

    # -- querying --------------------------------------------------------- #
    def search(self, mention: str, k: int = 20, min_score: float = 0.0,
               max_posting: Optional[int] = None) -> List[Tuple[int, float]]:
        """Best ``k`` KB rows for ``mention`` as ``(row, cosine)``, best first.

        A row's score is its best-matching alias. ``max_posting`` optionally
        skips grams that occur in more aliases than that (they carry little
        IDF weight but cost the most time); by default every gram is used so
        scores are exact cosines.
        """
        key = normalize_mention(mention)
        if not key or self.n_aliases == 0 or k <= 0:
            return []
        query = _buckets(key, self.ngram, self.n_buckets)
        query_weights = self.idf[query].astype(np.float64)
        query_norm = float(np.sqrt(np.sum(query_weights**2)))
        ids_parts = []
        weight_parts = []
        for bucket, weight in zip(query, query_weights):
            start, end = int(self.indptr[bucket]), int(self.indptr[bucket + 1])
            if end == start or (max_posting is not None and end - start > max_posting):
                continue
            ids_parts.append(self.postings[start:end])
            weight_parts.append(np.full(end - start, weight * weight))
        if not ids_parts:
            return []
        alias_ids = np.concatenate(ids_parts)
        weights = np.concatenate(weight_parts)
        touched, inverse = np.unique(alias_ids, return_inverse=True)
        dots = np.bincount(inverse, weights=weights)
        scores = dots / (query_norm * self.alias_norms[touched].astype(np.float64))
        keep = scores >= min_score
        touched, scores = touched[keep], scores[keep]
        if touched.size == 0:
            return []
        # Several aliases can point at one row: keep each row's best alias.
        # Over-fetch before deduplicating so k distinct rows usually survive.
        fetch = min(touched.size, k * 4)
        top = np.argpartition(-scores, fetch - 1)[:fetch] if fetch < touched.size else np.arange(touched.size)
        top = top[np.argsort(-scores[top], kind="stable")]
        best: Dict[int, float] = {}
        for alias_id, score in zip(touched[top], scores[top]):
            row = int(self.alias_rows[alias_id])
            if row not in best:
                best[row] = float(min(score, 1.0))
                if len(best) == k:
                    break
        return sorted(best.items(), key=lambda item: (-item[1], item[0]))

    # -- serialisation ---------------------------------------------------- #
    def to_disk(self, path: PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(path / f"fuzzy_{name}.npy", np.asarray(getattr(self, name)))
        meta = {"ngram": self.ngram, "n_buckets": self.n_buckets, "kb_content_hash": self.kb_content_hash,
                "kb_size": self.kb_size, "aliases": self.n_aliases, "version": 1}
        (path / INDEX_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def from_disk(cls, path: PathLike, mmap: bool = True) -> "FuzzyIndex":
        path = Path(path)
        meta_path = path / INDEX_META
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} not found: no fuzzy index saved in {path}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        arrays = {name: np.load(path / f"fuzzy_{name}.npy", mmap_mode="r" if mmap else None) for name in _ARRAYS}
        return cls(arrays, meta["ngram"], meta["n_buckets"], meta["kb_content_hash"], meta["kb_size"])

    @classmethod
    def load_or_build(cls, path: PathLike, kb: KnowledgeBase, **build_kwargs) -> "FuzzyIndex":
        """Load the index saved in ``path`` if it matches ``kb``; otherwise rebuild and save it."""
        path = Path(path)
        if (path / INDEX_META).exists():
            index = cls.from_disk(path)
            if not index.is_stale_for(kb):
                return index
        index = cls.build(kb, **build_kwargs)
        index.to_disk(path)
        return index


def rows_to_ids(kb: KnowledgeBase, scored_rows: Sequence[Tuple[int, float]]) -> List[Tuple[str, float]]:
    """Map ``(row, score)`` results to ``(entity_id, score)`` with one KB round trip."""
    ids = kb.ids_at([row for row, _ in scored_rows])
    return [(eid, score) for eid, (_, score) in zip(ids, scored_rows)]
