"""Joint entity and relation extraction with a GLiNER relex checkpoint, on plain word lists.

The entity path is :class:`~spacy_gliner.inference.entities.EntityExtractor`'s (windows, batching, span
candidates, greedy decoding); the relation path is the reference's (``docs/relex_reference.md``):

1. one prompt per window, ``<<ENT>> e1 ... <<SEP>> <<REL>> r1 ... <<SEP>> words``: every entity
   and relation label must fit in it (pairs are formed among entities of all labels at once);
2. per window, the spans whose best entity probability is ``> threshold`` are the relation
   arguments (no overlap filtering), paired by the adjacency layer (``> adjacency_threshold``)
   and classified against the raw ``<<REL>>`` vectors (``sigmoid > relation_threshold``);
3. after the document's entities are decoded (greedy flat or nested selection over all
   windows), a relation is kept only when both arguments are decoded entities, matched by
   exact word boundaries.

Long documents: windows overlap by ``window_overlap`` words, so a relation whose head and tail lie
in one window is found. When several windows see the same relation, the one owning the pair's
first word (the window ownership rule of entity spans) gives its score; otherwise the first window.

Given entities (:meth:`RelationExtractor.relations_between`, ``use_doc_ents``): the entity step is
skipped. Each window's span representations are computed as usual and the given spans that lie
wholly inside the window (and are at most ``max_width`` words wide) are the relation arguments;
adjacency, pairing, the opt-in caps and relation scoring are the same code as above.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch

from .decoding import DecodedSpan, greedy_select, span_candidates, token_candidates
from .entities import EntityExtractor
from ..modeling.checkpoint import GlinerCheckpoint
from ..modeling.relations.head import relation_prompt_vectors
from ..modeling.relations.pairing import EntitySelection, gather_entities, select_entities
from .relation_decoding import DecodedRelation, decode_relation_candidates
from .span_grid import span_index
from .token_relations import entities_at, token_entities, warn_entity_cap
from .window_batches import WindowBatch, window_batches
from .windows import Window


@dataclass
class RelexSettings:
    threshold: float = 0.5
    relation_threshold: Optional[float] = None  # None: ``threshold``, as in the reference
    adjacency_threshold: Optional[float] = None  # None: ``threshold``, as in the reference
    nested: bool = False
    # Opt-in caps (None: no cap). Memory is bounded without them: pairs are classified in chunks
    # and the adjacency is scored in row blocks. A cap drops candidates (with a warning), so the
    # output then differs from the reference's.
    max_pairs: Optional[int] = None
    max_entities: Optional[int] = None


@dataclass
class RelexResult:
    """One document's decoded entities, and its relations, whose ``head``/``tail`` index them."""

    entities: List[DecodedSpan]
    relations: List[DecodedRelation]


class RelationExtractor(EntityExtractor):
    """Entities and relations for documents given as word lists, with one relex checkpoint."""

    def __init__(self, checkpoint: GlinerCheckpoint, batch_size: int = 8, max_window_words: Optional[int] = None,
                 window_overlap: Optional[int] = None):
        config = checkpoint.config
        if not config.relex or getattr(checkpoint.model, "relation_head", None) is None:
            raise ValueError(
                "gliner_relex needs a relex checkpoint (gliner_config.json with 'relations_layer' set, "
                "model_type 'gliner_uni_encoder_span_relex' or 'gliner_uni_encoder_token_relex'); this one is "
                f"a plain {config.family} NER model. "
                "Use gliner_ner for it."
            )
        super().__init__(checkpoint, batch_size=batch_size, max_window_words=max_window_words,
                         window_overlap=window_overlap)
        rel_id = checkpoint.tokenizer.convert_tokens_to_ids(config.rel_token)
        if config.rel_token_index not in (-1, rel_id):
            raise ValueError(
                f"rel_token_index is {config.rel_token_index} but the tokenizer maps {config.rel_token!r} "
                f"to {rel_id}; the tokenizer does not belong to these weights."
            )
        self.rel_token_id = rel_id

    # -- labels -----------------------------------------------------------------------------
    def prompt_length(self, entity_texts: Sequence[str], relation_texts: Sequence[str]) -> int:
        return len(self.inputs.relex_prompt_ids(entity_texts, relation_texts))

    def check_relex_labels(self, entity_texts: Sequence[str], relation_texts: Sequence[str]) -> None:
        """Raise unless every entity and relation label fits in one prompt beside some text."""
        self.check_labels(list(entity_texts) + list(relation_texts))
        length, limit = self.prompt_length(entity_texts, relation_texts), self.prompt_budget
        if length > limit:
            from ..modeling.label_checks import relex_prompt_too_long

            raise ValueError(relex_prompt_too_long(len(entity_texts), len(relation_texts), length, limit))

    # -- documents --------------------------------------------------------------------------
    def extract_relations(
        self,
        docs_words: Sequence[Sequence[str]],
        entity_texts: Sequence[str],
        relation_texts: Sequence[str],
        settings: RelexSettings,
    ) -> List[RelexResult]:
        results = [RelexResult([], []) for _ in docs_words]
        if not entity_texts or not relation_texts or not any(docs_words):
            return results
        pieces = [self.inputs.word_pieces(words) for words in docs_words]
        prompt = self.inputs.relex_prompt_ids(entity_texts, relation_texts)
        windows = self.windows_for(pieces, len(prompt))
        candidates: Dict[int, List[DecodedSpan]] = {}
        found: Dict[int, Dict[int, List[WindowRelation]]] = {}
        for doc_index, spans, window, relations in self._score_relex_windows(windows, pieces, prompt, len(relation_texts), settings):
            if spans:
                candidates.setdefault(doc_index, []).extend(spans)
            if relations:
                found.setdefault(doc_index, {})[window.start] = relations
        for doc_index, spans in candidates.items():
            entities = greedy_select(spans, settings.nested, multi_label=False)
            relations = merge_window_relations(found.get(doc_index, {}), [(s.start, s.end) for s in entities])
            results[doc_index] = RelexResult(entities, relations)
        return results

    def relations_between(
        self,
        docs_words: Sequence[Sequence[str]],
        docs_entities: Sequence[Sequence[Tuple[int, int]]],
        docs_entity_texts: Sequence[Sequence[str]],
        relation_texts: Sequence[str],
        settings: RelexSettings,
    ) -> Tuple[List[List[DecodedRelation]], int]:
        """Relations among given entities (word spans, end exclusive) of each document.

        ``docs_entity_texts[i]`` is the entity part of document i's prompt. Returns, per document,
        relations whose ``head``/``tail`` index ``docs_entities[i]``, and the number of given
        entities that no window could hold (wider than ``max_width`` or than a window).
        """
        results: List[List[DecodedRelation]] = [[] for _ in docs_words]
        unusable = 0
        jobs = []  # (window, prompt ids, given entities wholly inside it)
        pieces: Dict[int, List[List[int]]] = {}
        # token-level relex models represent spans of any width; span models only up to max_width
        width = self.config.max_width if self.config.is_span_model else float("inf")
        for doc_index, (words, entities) in enumerate(zip(docs_words, docs_entities)):
            if len(entities) < 2 or not relation_texts:
                continue
            prompt = self.inputs.relex_prompt_ids(docs_entity_texts[doc_index], relation_texts)
            pieces[doc_index] = self.inputs.word_pieces(words)
            # windows_for numbers its documents from 0: this one is doc_index
            windows = [replace(w, doc_index=doc_index) for w in self.windows_for([pieces[doc_index]], len(prompt))]
            held = set()
            for window in windows:
                inside = [(s, e) for s, e in entities if window.start <= s and e <= window.end and e - s <= width]
                if settings.max_entities is not None and len(inside) > settings.max_entities:
                    warn_entity_cap(len(inside), settings.max_entities, "the first ones (document order) were kept")
                    inside = inside[: settings.max_entities]
                held.update(inside)
                if len(inside) >= 2:
                    jobs.append((window, prompt, inside))
            unusable += sum(1 for span in set(map(tuple, entities)) if span not in held)
        if not jobs:
            return results, unusable
        found: Dict[int, Dict[int, List[WindowRelation]]] = {}
        device = self.model.device
        K = self.config.max_width
        with torch.inference_mode():
            for batch in window_batches(jobs, pieces, self.inputs, self.batch_size, device, self.inference_model.represent,
                                        window_of=lambda job: job[0], prompt_of=lambda job: job[1], length="words"):
                reps = batch.encoded
                if self.config.is_span_model:
                    span_rep = self.model.span_head(reps.words)
                    B, W = span_rep.shape[:2]
                    keep = torch.zeros((B, W, K), dtype=torch.bool)
                    for b, (window, _, inside) in enumerate(batch.jobs):
                        for s, e in inside:
                            keep[b, s - window.start, e - s - 1] = True
                    entities = gather_entities(span_rep, keep.to(device), span_index(B, W, K, device))
                else:
                    entities = entities_at(self.model, reps.words, [
                        torch.tensor([(s - window.start, e - window.start - 1) for s, e in inside], dtype=torch.long)
                        for window, _, inside in batch.jobs
                    ])
                per_window = self.relations_among(entities, reps, batch.inputs, len(relation_texts), settings, batch.windows)
                for window, relations in zip(batch.windows, per_window):
                    if relations:
                        found.setdefault(window.doc_index, {})[window.start] = relations
        for doc_index, by_window in found.items():
            results[doc_index] = merge_window_relations(by_window, [tuple(span) for span in docs_entities[doc_index]])
        return results, unusable

    def relations_among(self, entities: EntitySelection, reps, inputs, num_relations: int, settings: RelexSettings,
                        windows: Sequence[Window]) -> List[List[WindowRelation]]:
        """Adjacency, pairs, relation scores and decoding for a batch of windows whose relation
        arguments are ``entities`` (``reps``: the batch's encoder output for ``inputs``); relations
        per window in document word offsets. Each window's pairs are streamed through the relation
        head in bounded chunks (see :meth:`RelationHead.candidate_pair_blocks`), so every candidate
        pair is classified whatever the entity count, unless the opt-in ``max_pairs`` cap is set."""
        threshold = settings.threshold
        adjacency_threshold = threshold if settings.adjacency_threshold is None else settings.adjacency_threshold
        relation_threshold = threshold if settings.relation_threshold is None else settings.relation_threshold
        head_module = self.model.relation_head
        rel_prompts = relation_prompt_vectors(
            reps.token_embeddings, inputs, self.rel_token_id, self.config.embed_rel_token, num_relations
        )
        chunk_size = head_module.pairs_per_chunk(num_relations)
        spans = entities.spans.tolist()
        real = entities.mask.bool()
        out, most_candidates = [], 0
        for b, window in enumerate(windows):
            relations: List[WindowRelation] = []
            present = torch.nonzero(real[b]).flatten()
            # padding rows after the last real entity take part in no pair; slicing them off keeps the
            # adjacency to this window's own E x E
            count = int(present[-1]) + 1 if present.numel() else 0
            entity_rep, entity_mask = entities.rep[b, :count], entities.mask[b, :count]
            blocks = head_module.candidate_pair_blocks(entity_rep, entity_mask, adjacency_threshold)
            if settings.max_pairs is not None:
                blocks, candidates = _highest_adjacency_pairs(blocks, settings.max_pairs, count)
                most_candidates = max(most_candidates, candidates)
            for pair_index in _chunks(blocks, chunk_size):
                logits = head_module(entity_rep[None], pair_index[None], rel_prompts[b : b + 1])[0]
                decoded = decode_relation_candidates(
                    logits.unsqueeze(0), pair_index.unsqueeze(0), None, relation_threshold, num_relations
                )[0]
                for rel in decoded:
                    hs, he = spans[b][rel.head]
                    ts, te = spans[b][rel.tail]
                    head = (window.start + hs, window.start + he + 1)
                    tail = (window.start + ts, window.start + te + 1)
                    owned = window.own_start <= min(head[0], tail[0]) < window.own_end
                    relations.append(WindowRelation(head, tail, rel.label, float(rel.score), owned))
            out.append(relations)
        if settings.max_pairs is not None and most_candidates > settings.max_pairs:
            warnings.warn(
                f"gliner_relex: a window had {most_candidates} candidate entity pairs; only the {settings.max_pairs} "
                "with the highest adjacency scores were classified (config 'max_pairs'). Set 'max_pairs' to null "
                "(the default) to classify every pair; memory stays bounded either way.",
                stacklevel=3,
            )
        return out

    def _score_relex_windows(self, windows, pieces, prompt, num_relations, settings: RelexSettings):
        """Yield (doc_index, entity candidates, window, relation candidates) per window."""
        arguments = self._span_arguments if self.config.is_span_model else self._token_arguments
        with torch.inference_mode():
            for batch in window_batches(windows, pieces, self.inputs, self.batch_size, self.model.device,
                                        self.inference_model.represent, prompt=prompt):
                by_doc, entities = arguments(batch, settings)
                per_window = self.relations_among(entities, batch.encoded, batch.inputs, num_relations, settings, batch.windows)
                for window, relations in zip(batch.windows, per_window):
                    yield window.doc_index, [], window, relations
                for doc_index, doc_spans in by_doc.items():
                    yield doc_index, doc_spans, None, []

    def _span_arguments(self, batch: WindowBatch, settings: RelexSettings):
        """Span models: entity candidates by document, and the relation arguments (spans whose best
        label probability passes the threshold)."""
        threshold = settings.threshold
        device = self.model.device
        logits, span_rep = self.model.score_spans(batch.encoded)
        by_doc = span_candidates(logits, batch.windows, threshold)
        B, W = logits.shape[:2]
        span_idx = span_index(B, W, self.config.max_width, device)
        span_mask = span_idx[..., 1] < batch.inputs.num_words.to(device).view(B, 1)
        entities = select_entities(span_rep, logits, span_mask, span_idx, threshold)
        if settings.max_entities is not None and entities.mask.size(1) > settings.max_entities:
            entities = _top_entities(span_rep, logits, span_mask, span_idx, threshold, settings.max_entities)
        return by_doc, entities

    def _token_arguments(self, batch: WindowBatch, settings: RelexSettings):
        """Token-level models: entity candidates by document, and the relation arguments read from
        start/end/inside scores (:mod:`spacy_gliner.inference.token_relations`)."""
        logits = self.model.score(batch.encoded)  # (B, W, C, 3), projected entity prompts
        by_doc = token_candidates(logits, batch.windows, settings.threshold)
        lengths = [w.length for w in batch.windows]
        entities = token_entities(self.model, batch.encoded.words, logits, lengths, settings.threshold, settings.max_entities)
        return by_doc, entities


class WindowRelation(NamedTuple):
    """A relation one window found, arguments as (start, end exclusive) document word spans;
    ``owned``: the window owns the pair's first word."""

    head: Tuple[int, int]
    tail: Tuple[int, int]
    label: int
    score: float
    owned: bool


def merge_window_relations(
    by_window: Dict[int, List[WindowRelation]], entity_spans: Sequence[Tuple[int, int]]
) -> List[DecodedRelation]:
    """One document's relations from all its windows (keyed by window start), arguments mapped to
    positions in ``entity_spans`` by exact boundaries (first match wins); relations whose head or
    tail is not among them are dropped. A relation seen by several windows is reported once, with
    the score of the window owning the pair's first word (else the first window that saw it)."""
    position: Dict[Tuple[int, int], int] = {}
    for i, span in enumerate(entity_spans):
        position.setdefault((int(span[0]), int(span[1])), i)
    chosen: Dict[Tuple[int, int, int], Tuple[float, bool]] = {}
    order: List[Tuple[int, int, int]] = []
    for start in sorted(by_window):
        for rel in by_window[start]:
            h, t = position.get(rel.head), position.get(rel.tail)
            if h is None or t is None:
                continue
            key = (h, t, rel.label)
            if key not in chosen:
                order.append(key)
                chosen[key] = (rel.score, rel.owned)
            elif rel.owned and not chosen[key][1]:
                chosen[key] = (rel.score, rel.owned)
    return [DecodedRelation(h, t, c, chosen[(h, t, c)][0]) for h, t, c in order]


def _top_entities(span_rep, logits, span_mask, span_idx, threshold: float, cap: int):
    """The reference's selection (best label probability > threshold) limited to the ``cap`` most
    probable spans per window, still packed in flat span order."""
    B = span_rep.size(0)
    best = torch.sigmoid(logits).max(dim=-1).values.reshape(B, -1)
    keep = (best > threshold) & span_mask.reshape(B, -1).bool()
    warn_entity_cap(int(keep.sum(dim=1).max()), cap, "the most probable ones were kept")
    top = best.masked_fill(~keep, float("-inf")).topk(cap, dim=1).indices
    capped = torch.zeros_like(keep).scatter_(1, top, True) & keep
    return gather_entities(span_rep, capped, span_idx.reshape(B, -1, 2) * span_mask.reshape(B, -1, 1).long())


def _highest_adjacency_pairs(
    blocks: Iterator[Tuple[torch.Tensor, Optional[torch.Tensor]]], max_pairs: int, num_entities: int
) -> Tuple[List[Tuple[torch.Tensor, None]], int]:
    """The opt-in ``max_pairs`` cap on one window's candidate pair blocks: the ``max_pairs`` pairs
    with the highest adjacency scores (the first ones without an adjacency layer), back in row-major
    order, as one block; and how many candidates there were. Kept pairs are selected block by block,
    so memory follows the cap, not the candidate count."""
    kept_index: Optional[torch.Tensor] = None
    kept_score: Optional[torch.Tensor] = None
    total = 0
    for index, score in blocks:
        total += index.size(0)
        if score is None:  # no adjacency layer: the pairs come in row-major order, keep the first ones
            room = max_pairs - (0 if kept_index is None else kept_index.size(0))
            if room > 0:
                kept_index = index[:room] if kept_index is None else torch.cat((kept_index, index[:room]))
            continue
        if kept_index is not None:
            index, score = torch.cat((kept_index, index)), torch.cat((kept_score, score))
        if index.size(0) > max_pairs:
            top = score.float().topk(max_pairs).indices
            index, score = index[top], score[top]
        kept_index, kept_score = index, score
    if kept_index is None or kept_index.size(0) == 0:
        return [], total
    order = (kept_index[:, 0] * num_entities + kept_index[:, 1]).argsort()
    return [(kept_index[order], None)], total


def _chunks(blocks, size: int) -> Iterator[torch.Tensor]:
    """Re-cut a stream of ``(pair index (n, 2), ...)`` blocks into pair index chunks of exactly
    ``size`` pairs (the last one shorter), order kept: sparse adjacency blocks would otherwise
    reach the relation head a few pairs at a time."""
    pending: List[torch.Tensor] = []
    held = 0
    for index, _ in blocks:
        while index.size(0):
            take = index[: size - held]
            index = index[take.size(0):]
            pending.append(take)
            held += take.size(0)
            if held == size:
                yield torch.cat(pending)
                pending, held = [], 0
    if held:
        yield torch.cat(pending)
