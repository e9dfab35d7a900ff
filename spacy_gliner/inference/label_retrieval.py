"""Top-k label retrieval for bi-encoder span models with very large label sets.

Exhaustive bi-encoder scoring costs ``spans x labels x dim`` per window: with a million labels it
dominates everything else. Retrieval first ranks all labels against a few *pooled* vectors of the
window (the element-wise max and the mean of its valid span vectors, i.e. the span head's output
that the labels are scored against), keeps the ``top_k`` best per window, and only those are
scored exactly over every span. Ranking costs ``queries x labels x dim`` per window (2 queries
instead of hundreds to thousands of spans), is computed exactly (brute-force matmul over label
chunks, no approximate index) and keeps memory bounded by the chunk size.

When the caller hands over the label set's vectors as *stored* (the cache's float16 or float32
matrix, memory-mapped and zero-copy when the labels are the cache's own rows in order), ranking
multiplies in that dtype without converting a million rows to float32 per batch: the best
``top_k`` more than asked for by the stored-precision score are re-ranked with float32 vectors, so only labels
whose pooled scores tie within half-precision rounding at the ``top_k`` border can differ from a
float32 ranking.

The pooled score is a ranking heuristic, not an upper bound: a label whose best span passes the
threshold can in principle rank below ``top_k``. The extractor therefore asks for a deeper ranking
than ``top_k`` and scores further down it only in windows whose shortlist is saturated (labels in
its lower half still pass the threshold: ``EntityExtractor._retrieved_candidates``). Scores of the labels that are kept are exact (the
same span and label vectors), so retrieval can only lose entities, never add or change one;
``tests/inference/test_label_retrieval.py`` and ``bench/scale.py`` measure that recall against exhaustive scoring.

``backend="faiss"`` ranks with a flat inner-product faiss index (exact as well; imported lazily,
only useful where faiss is faster than torch's matmul, e.g. on many cores).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from .span_grid import spans_inside

POOLINGS = ("max", "mean", "max+mean")


class LabelRetriever:
    """Per-window top-k labels by pooled span vectors (see the module docstring)."""

    def __init__(self, top_k: int, pooling: str = "max+mean", chunk_size: int = 65536, backend: str = "exact"):
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"label top_k must be a positive integer, got {top_k!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"label retrieval pooling must be one of {POOLINGS}, got {pooling!r}")
        if backend not in ("exact", "faiss"):
            raise ValueError(f"label retrieval backend must be 'exact' or 'faiss', got {backend!r}")
        self.top_k = top_k
        self.pooling = pooling
        self.chunk_size = chunk_size
        self.backend = backend
        self._faiss_index = None
        self._faiss_key = None

    # -- queries --------------------------------------------------------------------------------
    def queries(self, spans: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, Q, D) pooled vectors from span vectors (B, W, K, D); ``lengths``: words per window.

        Only spans inside the window count (start + width <= length), as in decoding."""
        batch, words, widths, _ = spans.shape
        valid = spans_inside(lengths, words, widths).to(spans.device)
        flat = spans.reshape(batch, words * widths, -1).float()
        mask = valid.reshape(batch, words * widths, 1)
        out = []
        if self.pooling in ("max", "max+mean"):
            out.append(flat.masked_fill(~mask, float("-inf")).amax(dim=1))
        if self.pooling in ("mean", "max+mean"):
            out.append((flat * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1))
        return torch.stack(out, dim=1)

    # -- ranking ----------------------------------------------------------------------------------
    def select(
        self,
        queries: torch.Tensor,
        label_vectors: Callable[[int, int], torch.Tensor],
        n_labels: int,
        key: Optional[object] = None,
        stored: Optional[torch.Tensor] = None,
        vectors_at: Optional[Callable[[np.ndarray], torch.Tensor]] = None,
        depth: Optional[int] = None,
    ) -> torch.Tensor:
        """(B, k) label indices, best first, k = min(depth or top_k, n_labels).

        ``label_vectors(begin, end)`` returns the float32 (end - begin, D) vectors of labels
        ``begin..end`` on the queries' device. ``key`` identifies the label set (faiss backend:
        the index is rebuilt when it changes). ``stored``: the (n_labels, D) vectors in their
        storage dtype on the queries' device, with ``vectors_at(positions)`` giving float32 rows
        for the re-ranking (see the module docstring)."""
        k = min(depth or self.top_k, n_labels)
        if self.backend == "faiss":
            return self._select_faiss(queries, label_vectors, n_labels, k, key)
        if stored is not None and vectors_at is not None:
            return self._select_stored(queries, stored, vectors_at, k)
        batch, n_queries, dim = queries.shape
        flat = queries.reshape(batch * n_queries, dim)
        best_scores = best_index = None
        for begin in range(0, n_labels, self.chunk_size):
            end = min(begin + self.chunk_size, n_labels)
            scores = (flat @ label_vectors(begin, end).T).view(batch, n_queries, -1).amax(dim=1)  # (B, n)
            index = torch.arange(begin, end, device=queries.device).expand(batch, -1)
            if best_scores is not None:
                scores = torch.cat([best_scores, scores], dim=1)
                index = torch.cat([best_index, index], dim=1)
            top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            best_scores, best_index = top.values, torch.gather(index, 1, top.indices)
        return best_index

    def _select_stored(self, queries, stored, vectors_at, k):
        batch, n_queries, dim = queries.shape
        flat = queries.reshape(batch * n_queries, dim)
        low = flat.to(stored.dtype)
        depth = min(k + self.top_k, stored.shape[0])  # re-ranked margin: top_k rows past what is asked
        best_scores = best_index = None
        for begin in range(0, stored.shape[0], 4 * self.chunk_size):
            part = stored[begin : begin + 4 * self.chunk_size]
            scores = (low @ part.T).float().view(batch, n_queries, -1).amax(dim=1)
            if best_scores is None or best_scores.shape[1] < depth:
                index = torch.arange(begin, begin + part.shape[0], device=queries.device).expand(batch, -1)
                if best_scores is not None:
                    scores, index = torch.cat([best_scores, scores], dim=1), torch.cat([best_index, index], dim=1)
                top = torch.topk(scores, min(depth, scores.shape[1]), dim=1)
                best_scores, best_index = top.values, torch.gather(index, 1, top.indices)
            else:
                best_scores, best_index = _merge_above_floor(best_scores, best_index, scores, begin)
        if depth == k:
            return best_index
        # float32 re-ranking of the union of every window's shortlist
        union, inverse = torch.unique(best_index, return_inverse=True)
        exact = (flat.float() @ vectors_at(union.cpu().numpy()).T).view(batch, n_queries, -1).amax(dim=1)
        shortlist = torch.gather(exact, 1, inverse)
        return torch.gather(best_index, 1, torch.topk(shortlist, k, dim=1).indices)

    def _select_faiss(self, queries, label_vectors, n_labels, k, key):
        import numpy as np

        # kb.dense is a leaf of numpy-only dense search (it imports nothing else of the package, no
        # KB store and no linker): one faiss wrapper for KB search and label ranking alike
        from ..kb.dense import FaissIndex

        if self._faiss_index is None or key is None or key != self._faiss_key:
            chunks = (
                label_vectors(begin, min(begin + self.chunk_size, n_labels)).cpu().numpy()
                for begin in range(0, n_labels, self.chunk_size)
            )
            self._faiss_index, self._faiss_key = FaissIndex.from_chunks(queries.shape[-1], chunks), key
        batch, n_queries, dim = queries.shape
        flat = np.ascontiguousarray(queries.reshape(batch * n_queries, dim).float().cpu().numpy())
        # the best label for any of a window's queries: search k per query, keep the k best of the union
        scores, index = self._faiss_index.search(flat, k)
        scores = torch.from_numpy(scores).view(batch, n_queries * k)
        index = torch.from_numpy(index).view(batch, n_queries * k)
        out = []
        for b in range(batch):
            best = {}
            for s, i in sorted(zip(scores[b].tolist(), index[b].tolist()), reverse=True):
                if i >= 0 and i not in best:
                    best[i] = s
                if len(best) == k:
                    break
            out.append(list(best))
        return torch.tensor(out, dtype=torch.long, device=queries.device)


def _merge_above_floor(best_scores, best_index, scores, offset):
    """Merge a chunk's (B, n) scores into each row's running top list (B, depth), best first.

    Only scores above a row's current last entry can enter it, and after the first chunk those
    are few: a top-k over the few (rather than over depth + n scores, which costs more the deeper
    the list) gives the same list."""
    depth = best_scores.shape[1]
    above = scores > best_scores[:, -1:]
    out_scores, out_index = best_scores.clone(), best_index.clone()
    for row in torch.nonzero(above.any(dim=1)).flatten().tolist():
        fresh = torch.nonzero(above[row]).flatten()
        merged_scores = torch.cat([best_scores[row], scores[row, fresh]])
        merged_index = torch.cat([best_index[row], fresh + offset])
        top = torch.topk(merged_scores, depth)
        out_scores[row], out_index[row] = top.values, merged_index[top.indices]
    return out_scores, out_index
