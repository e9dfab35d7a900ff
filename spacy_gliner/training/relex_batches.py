"""Training batches of relex models: entity targets (as for span models) plus relation targets.

What the reference (``gliner`` 0.2.29, ``RelationExtractionSpanProcessor`` and
``UniEncoderSpanRelexModel.forward``) trains, and how we build it:

* **Prompt**: ``<<ENT>> e1 ... <<SEP>> <<REL>> r1 ... <<SEP>>`` per example. Entity labels are the
  usual sample (gold types plus corpus negatives); relation labels are sampled the same way from
  the example's gold relation types and its corpus's relation label set.
* **Relation arguments**: the gold spans whose label is in the prompt (the reference selects spans
  whose target row has a 1), packed in flat span order ``start * max_width + width``, which is the
  order :func:`~spacy_gliner.modeling.relations.pairing.gather_entities` packs them in.
* **Pairs** (teacher forcing): every gold pair, plus negative pairs: the reversed direction of each
  gold pair that is not itself gold, then random distinct pairs until there are
  ``max(1, int(#gold pairs * ratio))`` negatives, ``ratio`` drawn uniformly from
  ``negative_ratio`` per example (at most ``10 x`` that many draws). Pairs are sorted (head, tail),
  the row-major order in which the model's pairing step reads an adjacency matrix.
* **Adjacency target** (E x E): 1 for every pair above (gold and negative), 0 elsewhere. The
  adjacency layer thus learns which pairs to hand to the relation classifier, negatives included,
  as in the reference.
* **Relation targets** (N x R): 1 where the pair has that gold relation label.

Relations whose label is not prompted (cut by ``max_types``) are not gold pairs, as in the
reference; relations whose argument is not a prompted gold span are counted in ``counts``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import torch

from .batches import BatchBuilder, GoldText, TrainingBatch

DEFAULT_NEGATIVE_RATIO = (1.0, 10.0)


@dataclass
class RelexTrainingBatch:
    entity: TrainingBatch  # inputs (relex prompts) and entity span targets
    relation_labels: List[List[str]]  # prompted relation labels per example
    relation_label_mask: torch.Tensor  # (B, R)
    entity_keep: torch.Tensor  # (B, W, K) bool: the relation arguments
    pair_index: torch.Tensor  # (B, N, 2) long, (head, tail) entity indices, -1 on padding
    pair_mask: torch.Tensor  # (B, N) bool
    adjacency: torch.Tensor  # (B, E, E) float targets
    relation_targets: torch.Tensor  # (B, N, R) float targets
    counts: Dict[str, int] = field(default_factory=dict)

    @property
    def sample(self):
        return self.entity.sample

    @property
    def num_relation_labels(self) -> int:
        return self.relation_label_mask.size(1)


def sample_pairs(
    gold: Dict[Tuple[int, int], List[int]],
    num_entities: int,
    rng: random.Random,
    negative_ratio: Tuple[float, float] = DEFAULT_NEGATIVE_RATIO,
    reversed_negatives: bool = True,
) -> List[Tuple[int, int]]:
    """Gold pairs plus sampled negative pairs, sorted by (head, tail)."""
    low, high = negative_ratio
    wanted = max(1, int(len(gold) * rng.uniform(low, high)))
    negatives = set()
    if reversed_negatives:
        negatives.update((t, h) for h, t in gold if (t, h) not in gold)
    attempts = 0
    while num_entities > 1 and len(negatives) < wanted and attempts < wanted * 10:
        attempts += 1
        pair = (rng.randrange(num_entities), rng.randrange(num_entities))
        if pair[0] != pair[1] and pair not in gold:
            negatives.add(pair)
    return sorted(set(gold) | negatives)


class RelexBatchBuilder(BatchBuilder):
    """Samples entity and relation prompt labels, builds inputs, entity and relation targets."""

    def __init__(
        self,
        config,
        inputs,
        sampling,
        corpus_labels: Dict[str, List[str]],
        relation_corpus_labels: Dict[str, List[str]],
        seed: int = 0,
        negative_ratio: Tuple[float, float] = DEFAULT_NEGATIVE_RATIO,
        reversed_negatives: bool = True,
    ):
        super().__init__(config, inputs, sampling, corpus_labels, seed=seed)
        self.relation_corpus_labels = relation_corpus_labels
        self.negative_ratio = tuple(negative_ratio)
        self.reversed_negatives = reversed_negatives

    def build(self, texts: Sequence[GoldText], sample=None, prompts=None) -> RelexTrainingBatch:
        sample = sample or self.sample_labels(texts)
        relation_sample = self.sample_labels(
            texts, gold=[[label for _, _, label in text.relations] for text in texts], corpus_labels=self.relation_corpus_labels
        )
        prompts = [
            self.inputs.relex_prompt_ids(entity_labels, relation_labels)
            for entity_labels, relation_labels in zip(sample.labels, relation_sample.labels)
        ]
        entity = super().build(texts, sample, prompts)
        B, W, K = entity.position_mask.shape
        if entity.targets.size(-1):
            keep = (entity.targets.amax(dim=-1) > 0) & entity.position_mask.bool()
        else:
            keep = torch.zeros((B, W, K), dtype=torch.bool)
        R = max((len(labels) for labels in relation_sample.labels), default=0)
        relation_label_mask = torch.zeros((B, R), dtype=torch.float32)
        per_example: List[Tuple[int, List[Tuple[int, int]], Dict[Tuple[int, int], List[int]]]] = []
        dropped = 0
        for b, text in enumerate(texts):
            relation_label_mask[b, : len(relation_sample.labels[b])] = 1.0
            label_index = {label: i for i, label in enumerate(relation_sample.labels[b])}
            flat = torch.nonzero(keep[b].reshape(-1), as_tuple=True)[0].tolist()
            entity_of = {(f // K, f // K + f % K + 1): e for e, f in enumerate(flat)}
            gold: Dict[Tuple[int, int], List[int]] = {}
            for head, tail, label in text.relations:
                if label not in label_index:
                    continue  # not prompted: not a gold pair (reference)
                h = entity_of.get(text.spans[head][:2])
                t = entity_of.get(text.spans[tail][:2])
                if h is None or t is None or h == t:
                    dropped += 1
                    continue
                labels = gold.setdefault((h, t), [])
                if label_index[label] not in labels:
                    labels.append(label_index[label])
            pairs = sample_pairs(gold, len(flat), self.rng, self.negative_ratio, self.reversed_negatives) if R else []
            per_example.append((len(flat), pairs, gold))
        E = max((n for n, _, _ in per_example), default=0)
        N = max(1, max((len(pairs) for _, pairs, _ in per_example), default=0))
        pair_index = torch.full((B, N, 2), -1, dtype=torch.long)
        pair_mask = torch.zeros((B, N), dtype=torch.bool)
        adjacency = torch.zeros((B, E, E), dtype=torch.float32)
        relation_targets = torch.zeros((B, N, R), dtype=torch.float32)
        positives = 0
        for b, (_, pairs, gold) in enumerate(per_example):
            for n, (h, t) in enumerate(pairs):
                pair_index[b, n] = torch.tensor([h, t])
                pair_mask[b, n] = True
                adjacency[b, h, t] = 1.0
                for c in gold.get((h, t), ()):
                    relation_targets[b, n, c] = 1.0
                    positives += 1
        counts = dict(entity.counts)
        counts.update(relation_positives=positives, relations_without_prompted_arguments=dropped)
        return RelexTrainingBatch(
            entity, relation_sample.labels, relation_label_mask, keep, pair_index, pair_mask, adjacency,
            relation_targets, counts,
        )
