"""Per-batch prompt-label sampling of the GLiNER training recipe (the span targets that follow
from the sampled labels are in :mod:`spacy_gliner.training.span_targets`).

Pure Python; no torch.  The torch side turns
the index lists produced here into tensors with a scatter.

Prompt labels (``sample_prompt_labels``)
========================================
GLiNER trains with *per-batch* label prompts: each example is scored against its
own gold types (positives) plus some types it does not contain (negatives), so the
model learns to say "no" to types that are asked but absent.  The reference
(``gliner`` 0.2.29, ``data_processing/processor.py``) has two variants and we offer
both (``mode``):

``"per_example"`` (reference uni-encoder ``BaseProcessor.batch_generate_class_mappings``)
    1. Negative candidates: the distinct gold types of the whole batch (plus
       ``pool`` when given), shuffled, at most ``max_sampled_negatives`` (100) kept.
       One list for the batch; every example takes negatives from its front.
    2. Per example, ``ratio = randint(0, max_neg_type_ratio)`` (0 when the maximum is
       0) and ``n_neg = ratio * number_of_gold_mentions`` (mentions, not types).
    3. Prompt = positives + the first ``n_neg`` admissible candidates, shuffled,
       optionally randomly truncated (``random_drop``), then cut to ``max_types``.
    Each example gets its own label list; rows are padded to the longest list on the
    torch side (``PromptLabelSample.padded_label_mask``).

``"shared"`` (reference bi-encoder ``BaseBiEncoderProcessor.batch_generate_class_mappings``)
    One label list for the whole batch: the union of the examples' gold types
    (+ ``randint(0, max_neg_type_ratio) * |union|`` extra pool types when ``pool`` is
    given), shuffled, optionally randomly truncated, cut to ``max_types * B``.  The
    gold types of one example act as negatives for the others.  ``label_mask`` marks,
    per example, the labels that may be scored (positives and admissible negatives);
    the others are masked out of the loss (the ``label_mask (B, C)`` argument of
    ``losses.span_classification_loss``).  This is the layout a bi-encoder wants
    (labels encoded once per batch).

Which negatives are admissible (``negative_rule``)
--------------------------------------------------
A type ``t`` absent from an example's gold is a *true* negative only if the
example's corpus annotates ``t`` exhaustively, i.e. ``t`` belongs to that corpus'
label set.  Prompting ``"chemical"`` on a WikiANN sentence that mentions aspirin
teaches the model that aspirin is not a chemical, because WikiANN never annotates
chemicals.  Hence the default rule:

* ``"corpus"`` (default): ``t`` is a negative for an example of corpus ``X`` only if
  ``t`` is in ``corpus_labels[X]`` (labels are compared as exact strings, so a type
  shared by name between corpora, e.g. ``"person"``, is admissible across them).
  With ``corpora=None`` all examples are taken to come from one corpus whose
  scheme covers every label seen (single-corpus fine-tuning: every absent type is a
  true negative).  A corpus named in ``corpora`` but missing from
  ``corpus_labels`` raises ``KeyError``.
* ``"any"``: every type is admissible (the reference behaviour; it relies on
  pseudo-labelled, exhaustively annotated data such as Pile-NER).

Documented differences from the reference
-----------------------------------------
* Randomness comes only from the ``random.Random`` passed in, and every set is
  sorted before it is shuffled, so a seed reproduces a batch across processes (the
  reference shuffles ``list(set(...))``, whose order depends on ``PYTHONHASHSEED``;
  its bi-encoder even applies ``set`` after the shuffle).
* Positives are removed from the candidate list *before* taking ``n_neg``; the
  reference takes ``n_neg`` first and lets the de-duplication swallow candidates that
  are positives, so it gets fewer negatives than it asked for.
* ``random_drop`` (keep a uniformly drawn number ``1..n`` of the shuffled labels)
  is the ``random_drop: true`` option of the original GLiNER training configs; 0.2.29
  parses the key but no longer implements it, so it is off by default.
* Examples without gold mentions get ``n_neg = ratio * empty_negatives``
  negatives (reference: none, and a dummy ``""`` label); the default
  ``empty_negatives=0`` keeps the reference behaviour except that the label list is
  simply empty (the loss masks the row).
* Positives cut by ``max_types`` / ``random_drop`` are reported in
  ``PromptLabelSample.dropped_positives`` (they are not prompted, so their spans are
  not false negatives: they are simply not asked).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

__all__ = [
    "LabelSamplingConfig",
    "PromptLabelSample",
    "sample_prompt_labels",
    "is_admissible_negative",
]


@dataclass(frozen=True)
class LabelSamplingConfig:
    """Knobs of the prompt-label sampler (defaults = reference ``GLiNERConfig``)."""

    max_types: int = 25
    max_neg_type_ratio: int = 1
    max_sampled_negatives: int = 100
    random_drop: bool = False
    shuffle: bool = True
    mode: str = "per_example"  # or "shared"
    negative_rule: str = "corpus"  # or "any"
    empty_negatives: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("per_example", "shared"):
            raise ValueError(f"mode must be 'per_example' or 'shared', got {self.mode!r}")
        if self.negative_rule not in ("corpus", "any"):
            raise ValueError(f"negative_rule must be 'corpus' or 'any', got {self.negative_rule!r}")
        if self.max_types < 1:
            raise ValueError("max_types must be >= 1")
        if self.max_neg_type_ratio < 0 or self.max_sampled_negatives < 0 or self.empty_negatives < 0:
            raise ValueError("max_neg_type_ratio, max_sampled_negatives and empty_negatives must be >= 0")


@dataclass
class PromptLabelSample:
    """Result of :func:`sample_prompt_labels` for a batch of ``B`` examples.

    ``labels[i]`` is the ordered prompt of example ``i`` (identical lists in shared
    mode); ``label_mask[i][c]`` is 1 when ``labels[i][c]`` may be scored for example
    ``i`` (always 1 in per-example mode).  ``positives[i]`` are the distinct gold
    types of example ``i`` that were prompted, ``negatives[i]`` the scored non-gold
    ones, ``dropped_positives[i]`` the gold types left out of the prompt.
    """

    labels: List[List[str]]
    label_mask: List[List[int]]
    positives: List[List[str]]
    negatives: List[List[str]]
    dropped_positives: List[List[str]]
    mode: str

    @property
    def num_labels(self) -> int:
        """``C``: the longest prompt of the batch."""
        return max((len(x) for x in self.labels), default=0)

    def padded_label_mask(self) -> List[List[int]]:
        """``(B, C)`` label mask padded with 0 to :attr:`num_labels`."""
        C = self.num_labels
        return [row + [0] * (C - len(row)) for row in self.label_mask]

    def label_index(self, i: int) -> Dict[str, int]:
        return {label: c for c, label in enumerate(self.labels[i])}


def is_admissible_negative(
    label: str,
    corpus: Optional[str],
    corpus_labels: Optional[Mapping[str, Iterable[str]]],
    rule: str = "corpus",
) -> bool:
    """Whether ``label`` may be used as a negative for an example of ``corpus``.

    See the module docstring.  ``corpus=None`` means "the single corpus", for which
    every label is admissible.
    """
    if rule == "any" or corpus is None:
        return True
    if rule != "corpus":
        raise ValueError(f"unknown negative rule {rule!r}")
    if corpus_labels is None or corpus not in corpus_labels:
        raise KeyError(f"no label set given for corpus {corpus!r} (needed by negative_rule='corpus')")
    return label in corpus_labels[corpus]


def _distinct_sorted(items: Iterable[str]) -> List[str]:
    return sorted(set(items))


def sample_prompt_labels(
    gold: Sequence[Sequence[str]],
    rng: random.Random,
    config: LabelSamplingConfig = LabelSamplingConfig(),
    *,
    corpora: Optional[Sequence[Optional[str]]] = None,
    corpus_labels: Optional[Mapping[str, Iterable[str]]] = None,
    pool: Optional[Iterable[str]] = None,
) -> PromptLabelSample:
    """Build the prompt labels of one training batch.

    Args:
        gold: per example, the labels of its gold *mentions* (one entry per mention,
            repeats allowed: the mention count sets the number of negatives, as in the
            reference).
        rng: the only source of randomness.
        config: see :class:`LabelSamplingConfig`.
        corpora: per example, the name of its corpus (``None`` = single corpus).
        corpus_labels: corpus name -> its full label set (required for every corpus
            named in ``corpora`` under ``negative_rule="corpus"``).
        pool: extra candidate negative types (e.g. all labels of all training
            corpora); by default only the batch's own gold types are candidates.

    Returns:
        :class:`PromptLabelSample`.
    """
    B = len(gold)
    if corpora is not None and len(corpora) != B:
        raise ValueError(f"corpora has {len(corpora)} entries for {B} examples")
    corp: List[Optional[str]] = list(corpora) if corpora is not None else [None] * B
    frozen_sets: Optional[Dict[str, frozenset]] = (
        {k: frozenset(v) for k, v in corpus_labels.items()} if corpus_labels is not None else None
    )
    rule = config.negative_rule

    def admissible(label: str, i: int) -> bool:
        return is_admissible_negative(label, corp[i], frozen_sets, rule)

    positives_all = [_distinct_sorted(g) for g in gold]
    pos_sets = [set(p) for p in positives_all]
    batch_types = _distinct_sorted(t for g in gold for t in g)
    pool_types = _distinct_sorted(pool) if pool is not None else []

    def truncate(types: List[str], cap: int) -> List[str]:
        if config.shuffle:
            rng.shuffle(types)
        if config.random_drop and types:
            types = types[: rng.randint(1, len(types))]
        return types[:cap]

    def ratio() -> int:
        return rng.randint(0, config.max_neg_type_ratio) if config.max_neg_type_ratio else 0

    labels: List[List[str]] = []
    masks: List[List[int]] = []
    if config.mode == "per_example":
        candidates = _distinct_sorted(batch_types + pool_types)
        candidates = rng.sample(candidates, k=min(config.max_sampled_negatives, len(candidates)))
        for i, g in enumerate(gold):
            r = ratio()
            n_neg = r * (len(g) if len(g) else config.empty_negatives)
            negs: List[str] = []
            if n_neg:
                for t in candidates:
                    if t not in pos_sets[i] and admissible(t, i):
                        negs.append(t)
                        if len(negs) == n_neg:
                            break
            types = truncate(positives_all[i] + negs, config.max_types)
            labels.append(types)
            masks.append([1] * len(types))
    else:
        union = list(batch_types)
        if pool_types:
            in_union = set(union)
            extra = [t for t in pool_types if t not in in_union]
            n_extra = min(len(extra), ratio() * len(union)) if union else 0
            union += rng.sample(extra, k=n_extra)
            union = sorted(union)
        shared = truncate(union, config.max_types * max(B, 1))
        for i in range(B):
            labels.append(list(shared))
            masks.append([1 if (t in pos_sets[i] or admissible(t, i)) else 0 for t in shared])

    pos_out, neg_out, dropped = [], [], []
    for i in range(B):
        prompted = set(labels[i])
        pos_out.append([t for t in labels[i] if t in pos_sets[i]])
        neg_out.append([t for t, m in zip(labels[i], masks[i]) if m and t not in pos_sets[i]])
        dropped.append([t for t in positives_all[i] if t not in prompted])
    return PromptLabelSample(labels, masks, pos_out, neg_out, dropped, config.mode)
