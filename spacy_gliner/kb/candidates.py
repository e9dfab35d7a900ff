"""Candidate generators: mention text (+ optional query embedding) -> scored KB ids.

Every generator has the same call signature::

    generator(mention: str, context_embedding: Optional[np.ndarray] = None) -> List[Candidate]

and returns at most ``k`` candidates, best first. Scores are only comparable
within one source ("exact": P(entity | alias), "fuzzy": trigram cosine,
"dense": inner product), which is why :class:`MergedCandidates` fuses by rank.

spaCy registry entries (``@misc``) return *builders*: functions of
``(kb, embeddings=None, encode=None)`` that create the generator once the linker has
loaded its KB, in the same spirit as spaCy's ``spacy.CandidateGenerator.v1``
returning a function of ``(kb, span)``. A config looks like::

    [components.gliner_linker.candidates]
    @misc = "spacy_gliner.MergedCandidates.v1"
    k = 30

    [components.gliner_linker.candidates.generators]

    [components.gliner_linker.candidates.generators.exact]
    @misc = "spacy_gliner.ExactAliasCandidates.v1"
    k = 10

    [components.gliner_linker.candidates.generators.fuzzy]
    @misc = "spacy_gliner.FuzzyCandidates.v1"
    k = 20
    min_score = 0.4
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Protocol, Sequence, Union

import numpy as np
from spacy.util import registry

from .base import KnowledgeBase
from .embeddings import EmbeddingStore, EncodeFn, encode_texts
from .fuzzy import FuzzyIndex, rows_to_ids
from .normalize import normalize_mention


class Candidate(NamedTuple):
    entity_id: str
    score: float
    source: str


class CandidateGenerator(Protocol):
    def __call__(self, mention: str, context_embedding: Optional[np.ndarray] = None) -> List[Candidate]: ...


# A registered builder: turns the linker's loaded KB (and embedding store) into a generator.
GeneratorBuilder = Callable[..., CandidateGenerator]


class ExactAliasCandidates:
    """Entities with an alias equal to the mention after ``normalize_mention``.

    Score = P(entity | alias) from the KB's alias priors.
    """

    source = "exact"

    def __init__(self, kb: KnowledgeBase, k: Optional[int] = None) -> None:
        self.kb = kb
        self.k = k

    def __call__(self, mention: str, context_embedding: Optional[np.ndarray] = None) -> List[Candidate]:
        found = self.kb.lookup_alias(mention)
        if self.k is not None:
            found = found[: self.k]
        return [Candidate(eid, prior, self.source) for eid, prior in found]


class FuzzyCandidates:
    """Entities whose aliases share character trigrams with the mention (TF-IDF cosine).

    ``index`` may be a :class:`FuzzyIndex`, a directory holding one (loaded
    memory-mapped and rebuilt there if stale), or None (built in memory from
    the KB now: about a second per 100k aliases).
    """

    source = "fuzzy"

    def __init__(self, kb: KnowledgeBase, index: Union[FuzzyIndex, str, Path, None] = None, k: int = 20,
                 min_score: float = 0.3, max_posting: Optional[int] = None) -> None:
        self.kb = kb
        if index is None:
            index = FuzzyIndex.build(kb)
        elif not isinstance(index, FuzzyIndex):
            index = FuzzyIndex.load_or_build(index, kb)
        if index.is_stale_for(kb):
            raise ValueError("The fuzzy index was built for a different version of the knowledge base; "
                             "rebuild it with FuzzyIndex.build(kb) or FuzzyIndex.load_or_build(path, kb)")
        self.index = index
        self.k = k
        self.min_score = min_score
        self.max_posting = max_posting

    def __call__(self, mention: str, context_embedding: Optional[np.ndarray] = None) -> List[Candidate]:
        hits = self.index.search(mention, self.k, self.min_score, self.max_posting)
        return [Candidate(eid, score, self.source) for eid, score in rows_to_ids(self.kb, hits)]


class DenseCandidates:
    """Top-k entities by inner product between a query embedding and the entity store.

    The query is ``context_embedding`` (the linker's mention/context vector
    from the same bi-encoder). If it is None and an ``encode`` function was
    given, the mention text itself is encoded; with neither, no candidates.
    """

    source = "dense"

    def __init__(self, kb: KnowledgeBase, embeddings: EmbeddingStore, k: int = 20, backend: str = "numpy",
                 chunk_size: int = 65_536, encode: Optional[EncodeFn] = None) -> None:
        if len(embeddings) != len(kb):
            raise ValueError(f"The embedding store has {len(embeddings)} rows but the knowledge base has "
                             f"{len(kb)} entities; update it with ensure_embeddings()")
        self.kb = kb
        self.embeddings = embeddings
        self.k = k
        self.backend = backend
        self.chunk_size = chunk_size
        self.encode = encode

    def __call__(self, mention: str, context_embedding: Optional[np.ndarray] = None) -> List[Candidate]:
        if len(self.kb) == 0:
            return []
        if context_embedding is None:
            if self.encode is None or not normalize_mention(mention):
                return []
            context_embedding = encode_texts(self.encode, [mention])[0]
        return self.batch(np.asarray(context_embedding)[None, :])[0]

    def batch(self, context_embeddings: np.ndarray) -> List[List[Candidate]]:
        """Candidates for many query embeddings ``(n, dim)`` in one pass over the store
        (what a linker should call with all mentions of a document)."""
        queries = np.asarray(context_embeddings, dtype=np.float32)
        if len(self.kb) == 0 or queries.shape[0] == 0:
            return [[] for _ in range(queries.shape[0])]
        scores, rows = self.embeddings.search(queries, self.k, self.backend, self.chunk_size)
        ids = self.kb.ids_at(rows.ravel().tolist())
        width = rows.shape[1]
        return [[Candidate(eid, float(s), self.source) for eid, s in zip(ids[i * width:(i + 1) * width], scores[i])]
                for i in range(rows.shape[0])]


class MergedCandidates:
    """Union of several generators, deduplicated by entity id, capped at ``k``.

    Each source's candidate list is first reduced to the best score per entity.
    Entities are then ranked by reciprocal-rank fusion, ``sum_s 1 / (rrf_k +
    rank_s)``, because raw scores from different sources are not on one scale;
    an entity found by several sources therefore rises. The returned
    Candidate's ``score`` is the fused score and its ``source`` lists the
    sources that found it, joined with "+" in generator order; per-source best
    scores are available from :meth:`scored`.
    """

    source = "merged"

    def __init__(self, generators: Sequence[CandidateGenerator], k: int = 30, rrf_k: float = 60.0) -> None:
        if not generators:
            raise ValueError("MergedCandidates needs at least one generator")
        self.generators = list(generators)
        self.k = k
        self.rrf_k = rrf_k

    def scored(self, mention: str, context_embedding: Optional[np.ndarray] = None) -> List[tuple]:
        """``[(entity_id, fused_score, {source: best score})]``, best first, at most k."""
        fused: Dict[str, float] = {}
        per_source: Dict[str, Dict[str, float]] = {}
        first_seen: Dict[str, int] = {}
        for generator in self.generators:
            best: Dict[str, Candidate] = {}
            for cand in generator(mention, context_embedding):
                if cand.entity_id not in best or cand.score > best[cand.entity_id].score:
                    best[cand.entity_id] = cand
            ranked = sorted(best.values(), key=lambda c: -c.score)
            for rank, cand in enumerate(ranked, start=1):
                fused[cand.entity_id] = fused.get(cand.entity_id, 0.0) + 1.0 / (self.rrf_k + rank)
                per_source.setdefault(cand.entity_id, {})[cand.source] = cand.score
                first_seen.setdefault(cand.entity_id, len(first_seen))
        order = sorted(fused, key=lambda eid: (-fused[eid], first_seen[eid]))[: self.k]
        return [(eid, fused[eid], per_source[eid]) for eid in order]

    def __call__(self, mention: str, context_embedding: Optional[np.ndarray] = None) -> List[Candidate]:
        return [Candidate(eid, score, "+".join(sources)) for eid, score, sources in
                self.scored(mention, context_embedding)]


# --------------------------------------------------------------------------- #
# spaCy registry: builders taking (kb, embeddings=None, encode=None)
# --------------------------------------------------------------------------- #


# Builders are small top-level classes, not closures: a pipeline holding one must pickle
# (``nlp.pipe(n_process=...)`` sends the pipeline to spawned workers by pickling it).


class ExactAliasBuilder:
    def __init__(self, k: Optional[int] = None) -> None:
        self.k = k

    def __call__(self, kb: KnowledgeBase, embeddings: Optional[EmbeddingStore] = None,
                 encode: Optional[EncodeFn] = None) -> CandidateGenerator:
        return ExactAliasCandidates(kb, k=self.k)


class FuzzyBuilder:
    def __init__(self, k: int = 20, min_score: float = 0.3, index_path: Optional[str] = None,
                 max_posting: Optional[int] = None) -> None:
        self.k, self.min_score, self.index_path, self.max_posting = k, min_score, index_path, max_posting

    def __call__(self, kb: KnowledgeBase, embeddings: Optional[EmbeddingStore] = None,
                 encode: Optional[EncodeFn] = None) -> CandidateGenerator:
        return FuzzyCandidates(kb, index=self.index_path, k=self.k, min_score=self.min_score, max_posting=self.max_posting)


class DenseBuilder:
    def __init__(self, k: int = 20, backend: str = "numpy", chunk_size: int = 65_536) -> None:
        self.k, self.backend, self.chunk_size = k, backend, chunk_size

    def __call__(self, kb: KnowledgeBase, embeddings: Optional[EmbeddingStore] = None,
                 encode: Optional[EncodeFn] = None) -> CandidateGenerator:
        if embeddings is None:
            raise ValueError("spacy_gliner.DenseCandidates.v1 needs the entity embedding store; "
                             "build it with spacy_gliner.kb.embeddings.ensure_embeddings()")
        return DenseCandidates(kb, embeddings, k=self.k, backend=self.backend, chunk_size=self.chunk_size, encode=encode)


class MergedBuilder:
    def __init__(self, generators: Dict[str, Any], k: int = 30, rrf_k: float = 60.0) -> None:
        self.generators, self.k, self.rrf_k = dict(generators), k, rrf_k

    def __call__(self, kb: KnowledgeBase, embeddings: Optional[EmbeddingStore] = None,
                 encode: Optional[EncodeFn] = None) -> CandidateGenerator:
        # Dict order is config order, which fixes the tie-break between sources.
        built = [builder(kb, embeddings, encode) for builder in self.generators.values()]
        return MergedCandidates(built, k=self.k, rrf_k=self.rrf_k)


@registry.misc("spacy_gliner.ExactAliasCandidates.v1")
def make_exact_alias_candidates(k: Optional[int] = None) -> GeneratorBuilder:
    return ExactAliasBuilder(k=k)


@registry.misc("spacy_gliner.FuzzyCandidates.v1")
def make_fuzzy_candidates(k: int = 20, min_score: float = 0.3, index_path: Optional[str] = None,
                          max_posting: Optional[int] = None) -> GeneratorBuilder:
    return FuzzyBuilder(k=k, min_score=min_score, index_path=index_path, max_posting=max_posting)


@registry.misc("spacy_gliner.DenseCandidates.v1")
def make_dense_candidates(k: int = 20, backend: str = "numpy", chunk_size: int = 65_536) -> GeneratorBuilder:
    return DenseBuilder(k=k, backend=backend, chunk_size=chunk_size)


@registry.misc("spacy_gliner.MergedCandidates.v1")
def make_merged_candidates(generators: Dict[str, Any], k: int = 30, rrf_k: float = 60.0) -> GeneratorBuilder:
    # Typed Dict[str, Any] because the installed confection validates the
    # values of a dict argument before resolving the nested @misc blocks in it,
    # so Dict[str, Callable] rejects valid configs; we check callability here.
    for name, builder in generators.items():
        if not callable(builder):
            raise TypeError(f"MergedCandidates generator {name!r} must be a registered builder "
                            f"(e.g. @misc = \"spacy_gliner.FuzzyCandidates.v1\"), got {builder!r}")
    return MergedBuilder(generators, k=k, rrf_k=rrf_k)
