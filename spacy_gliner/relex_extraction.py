"""Joint entity and relation extraction with a GLiNER relex checkpoint, on plain word lists.

The entity path is :class:`~spacy_gliner.extraction.EntityExtractor`'s (windows, batching, span
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
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from .decoding import DecodedSpan, greedy_select, span_candidates
from .extraction import EntityExtractor
from .modeling.checkpoint import GlinerCheckpoint
from .modeling.encoders import gather_prompt_vectors
from .modeling.relation_heads import CandidatePairs, select_entities
from .relation_decoding import decode_relation_candidates

DEFAULT_MAX_PAIRS = 10_000


@dataclass
class RelexSettings:
    threshold: float = 0.5
    relation_threshold: Optional[float] = None  # None: ``threshold``, as in the reference
    adjacency_threshold: Optional[float] = None  # None: ``threshold``, as in the reference
    nested: bool = False
    max_pairs: int = DEFAULT_MAX_PAIRS


class DecodedRelex(NamedTuple):
    """One relation: ``head``/``tail`` index the document's decoded entities, ``label`` the relation labels."""

    head: int
    tail: int
    label: int
    score: float


@dataclass
class RelexResult:
    entities: List[DecodedSpan]
    relations: List[DecodedRelex]


class RelationExtractor(EntityExtractor):
    """Entities and relations for documents given as word lists, with one relex checkpoint."""

    def __init__(self, checkpoint: GlinerCheckpoint, batch_size: int = 8, max_window_words: Optional[int] = None,
                 window_overlap: Optional[int] = None):
        config = checkpoint.config
        if not config.relex or getattr(checkpoint.model, "relation_head", None) is None:
            raise ValueError(
                "gliner_relex needs a relex checkpoint (gliner_config.json with 'relations_layer' set, "
                f"model_type 'gliner_uni_encoder_span_relex'); this one is a plain {config.family} NER model. "
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
            from .components.relex import _prompt_too_long

            raise ValueError(_prompt_too_long(len(entity_texts), len(relation_texts), length, limit))

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
        # doc -> window start -> relations in reference emission order, arguments in doc word offsets
        found: Dict[int, Dict[int, List[Tuple[Tuple[int, int], Tuple[int, int], int, float, bool]]]] = {}
        for doc_index, spans, window, relations in self._score_relex_windows(windows, pieces, prompt, len(relation_texts), settings):
            if spans:
                candidates.setdefault(doc_index, []).extend(spans)
            if relations:
                found.setdefault(doc_index, {})[window.start] = relations
        for doc_index, spans in candidates.items():
            entities = greedy_select(spans, settings.nested, multi_label=False)
            position: Dict[Tuple[int, int], int] = {}
            for i, span in enumerate(entities):
                position.setdefault((span.start, span.end), i)
            chosen: Dict[Tuple[int, int, int], Tuple[float, bool]] = {}
            order: List[Tuple[int, int, int]] = []
            for start in sorted(found.get(doc_index, {})):
                for head, tail, label, score, owned in found[doc_index][start]:
                    h, t = position.get(head), position.get(tail)
                    if h is None or t is None:
                        continue
                    key = (h, t, label)
                    if key not in chosen:
                        order.append(key)
                        chosen[key] = (score, owned)
                    elif owned and not chosen[key][1]:
                        chosen[key] = (score, owned)
            results[doc_index] = RelexResult(entities, [DecodedRelex(h, t, c, chosen[(h, t, c)][0]) for h, t, c in order])
        return results

    def _score_relex_windows(self, windows, pieces, prompt, num_relations, settings: RelexSettings):
        """Yield (doc_index, entity candidates, window, relation candidates) per window."""
        threshold = settings.threshold
        adjacency_threshold = threshold if settings.adjacency_threshold is None else settings.adjacency_threshold
        relation_threshold = threshold if settings.relation_threshold is None else settings.relation_threshold
        order = sorted(
            range(len(windows)),
            key=lambda i: sum(len(p) for p in pieces[windows[i].doc_index][windows[i].start : windows[i].end]),
        )
        head_module = self.model.relation_head
        K = self.config.max_width
        device = self.model.device
        with torch.inference_mode():
            for begin in range(0, len(order), self.batch_size):
                batch_windows = [windows[i] for i in order[begin : begin + self.batch_size]]
                batch = self.inputs.build([pieces[w.doc_index][w.start : w.end] for w in batch_windows], prompt).to(device)
                reps = self.model.represent(batch)
                logits, span_rep = self.model.score_spans(reps)
                by_doc = span_candidates(torch.sigmoid(logits), batch_windows, threshold)
                B, W = logits.shape[:2]
                starts = torch.arange(W, device=device).view(1, W, 1)
                widths = torch.arange(K, device=device).view(1, 1, K)
                ends = (starts + widths).expand(B, W, K)
                span_mask = ends < batch.num_words.to(device).view(B, 1, 1)
                span_idx = torch.stack((starts.expand(B, W, K), ends), dim=-1).reshape(B, W * K, 2)
                rel_prompts, _ = gather_prompt_vectors(
                    reps.token_embeddings, batch.input_ids, batch.attention_mask, self.rel_token_id,
                    self.config.embed_rel_token, count=num_relations,
                )
                entities = select_entities(span_rep, logits, span_mask, span_idx, threshold)
                adjacency = head_module.score_adjacency(entities.rep, entities.mask)
                pairs = head_module.make_pairs(entities.rep, entities.mask, adjacency, adjacency_threshold)
                pairs = cap_pairs(pairs, adjacency, settings.max_pairs)
                rel_logits, _ = head_module.score_relations(pairs.head, pairs.tail, rel_prompts)
                decoded = decode_relation_candidates(rel_logits, pairs.index, pairs.mask, relation_threshold, num_relations)
                spans = entities.spans.tolist()
                for b, window in enumerate(batch_windows):
                    relations = []
                    for rel in decoded[b]:
                        hs, he = spans[b][rel.head]
                        ts, te = spans[b][rel.tail]
                        head = (window.start + hs, window.start + he + 1)
                        tail = (window.start + ts, window.start + te + 1)
                        owned = window.own_start <= min(head[0], tail[0]) < window.own_end
                        relations.append((head, tail, rel.label, float(rel.score), owned))
                    yield window.doc_index, [], window, relations
                for doc_index, doc_spans in by_doc.items():
                    yield doc_index, doc_spans, None, []


def cap_pairs(pairs: CandidatePairs, adjacency: Optional[torch.Tensor], max_pairs: int) -> CandidatePairs:
    """At most ``max_pairs`` pairs per window: the highest adjacency scores (the first ones without
    an adjacency layer), kept in the reference's row-major order. Warns when it drops pairs."""
    counts = pairs.mask.sum(dim=1)
    if max_pairs is None or int(counts.max()) <= max_pairs:
        return pairs
    B, N = pairs.mask.shape
    rows = torch.arange(B, device=pairs.mask.device).unsqueeze(1)
    if adjacency is not None:
        value = adjacency[rows, pairs.index[..., 0].clamp_min(0), pairs.index[..., 1].clamp_min(0)].float()
    else:
        value = -torch.arange(N, device=pairs.mask.device, dtype=torch.float).unsqueeze(0).expand(B, N)
    value = value.masked_fill(~pairs.mask, float("-inf"))
    kept = value.topk(max_pairs, dim=1).indices.sort(dim=1).values  # (B, max_pairs), original order
    mask = pairs.mask.gather(1, kept)
    index = pairs.index.gather(1, kept.unsqueeze(-1).expand(-1, -1, 2))
    dim = pairs.head.size(-1)
    head = pairs.head.gather(1, kept.unsqueeze(-1).expand(-1, -1, dim))
    tail = pairs.tail.gather(1, kept.unsqueeze(-1).expand(-1, -1, dim))
    warnings.warn(
        f"gliner_relex: a window had {int(counts.max())} candidate entity pairs; only the {max_pairs} with "
        "the highest adjacency scores were classified (config 'max_pairs'). Raise 'max_pairs', the "
        "entity 'threshold' or the 'adjacency_threshold' to avoid dropping pairs.",
        stacklevel=3,
    )
    return CandidatePairs(index=index, mask=mask, head=head, tail=tail)
