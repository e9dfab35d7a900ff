"""Training batches: gold texts -> sampled prompt labels -> model inputs and targets.

Torch side, no spaCy: the component turns Examples into :class:`GoldText` (words and gold word
spans), this module does the rest.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..modeling.config import GlinerConfig
from ..modeling.inputs import InputBuilder
from ..modeling.model import EncodedBatch
from ..inference.windows import plan_windows
from .label_sampling import LabelSamplingConfig, PromptLabelSample, sample_prompt_labels
from .span_targets import batch_span_targets, token_target_indices


@dataclass
class GoldText:
    """One training text: words, gold spans as (start, end exclusive, label), its corpus, and gold
    relations as (head, tail, label) with head and tail indexing ``spans``."""

    words: List[str]
    spans: List[Tuple[int, int, str]]
    corpus: Optional[str] = None
    relations: List[Tuple[int, int, str]] = field(default_factory=list)
    # (document index in its batch, first word): where the words come from, when a text is a
    # window of a longer document (split_long_texts keeps it), to find its words' vectors
    origin: Tuple[int, int] = (0, 0)


@dataclass
class DecoderTargets:
    """What the generative label decoder learns from a batch: for each gold span its label's
    decoder tokens. ``selected``: the gold spans in the reference's order, (M, 3) rows of example,
    start, width (span form) or (M, 2) rows of example, position in the span table (token form,
    :class:`SpanTable`)."""

    selected: torch.Tensor
    label_ids: torch.Tensor  # (M, L) padded with the end-of-sequence id
    label_mask: torch.Tensor  # (M, L)
    word_tokens: List[List[List[int]]]  # decoder token ids of every word, per example
    prompt_tokens: List[List[int]]  # decoder token ids of each example's label prompt
    pad_id: int  # what pads the reference's decoder inputs to the batch's longest


@dataclass
class SpanTable:
    """Token-level decoder models: the spans their span layer learns from, as the reference's
    processor lists them per example: the gold spans of prompted labels (sorted), then random
    spans that overlap none of them (``neg_spans_ratio`` as many). (B, S, 2) start and end word
    (inclusive), (B, S) which entries are real, (B, S, C) one-hot gold labels."""

    span_idx: torch.Tensor
    span_mask: torch.Tensor
    span_labels: torch.Tensor

    def spans(self) -> List[List[Tuple[int, int]]]:
        """The real entries of each example, in table order."""
        return [
            [tuple(span) for span, real in zip(rows.tolist(), mask.tolist()) if real]
            for rows, mask in zip(self.span_idx, self.span_mask)
        ]


@dataclass
class TrainingBatch:
    encoded: EncodedBatch
    sample: PromptLabelSample
    label_mask: torch.Tensor  # (B, C)
    targets: torch.Tensor  # (B, W, K, C) span models, (B, W, C, 3) token models
    position_mask: torch.Tensor  # (B, W, K) valid spans, or (B, W) valid words
    counts: Dict[str, int] = field(default_factory=dict)
    # (B, W, text width) word vectors from a shared transformer (bi-encoders listening to a spaCy
    # ``transformer``); the model then reads these instead of running its text tower on ``encoded``
    word_vectors: Optional[torch.Tensor] = None
    decoder: Optional[DecoderTargets] = None  # generative-decoder models with gold spans in the batch
    span_table: Optional[SpanTable] = None  # token-level decoder models


def split_long_texts(
    texts: Sequence[GoldText], inputs: InputBuilder, max_words: int, overlap: int, max_pieces: int
) -> Tuple[List[GoldText], Counter]:
    """Texts that do not fit one encoder window become windows; each gold span goes to the window
    that owns its start (and contains it whole), each relation to the window holding both its
    arguments. Returns the pieces and the counts of what no window can hold: ``"spans"`` (only
    spans wider than half the overlap can be lost) and ``"relations"`` (arguments in different
    windows, or an argument lost)."""
    out: List[GoldText] = []
    lost: Counter = Counter()
    for text in texts:
        counts = [len(p) for p in inputs.word_pieces(text.words)]
        if len(text.words) <= max_words and sum(counts) <= max_pieces:
            out.append(text)
            continue
        placed = set()
        for window in plan_windows(0, counts, max_words, max_pieces, overlap):
            spans, index = [], {}
            for i, (start, end, label) in enumerate(text.spans):
                if window.own_start <= start < window.own_end:
                    if end <= window.end:
                        index[i] = len(spans)
                        spans.append((start - window.start, end - window.start, label))
                    else:
                        lost["spans"] += 1
            relations = []
            for r, (head, tail, label) in enumerate(text.relations):
                if head in index and tail in index:
                    relations.append((index[head], index[tail], label))
                    placed.add(r)
            origin = (text.origin[0], text.origin[1] + window.start)
            out.append(GoldText(text.words[window.start : window.end], spans, text.corpus, relations, origin))
        lost["relations"] += len(text.relations) - len(placed)
    return out, lost


# The one prompt type of a blank-entity batch (the reference's ``blank="entity"``).
BLANK_ENTITY = "entity"


def blank_entity_batch(texts: Sequence[GoldText], mode: str) -> Tuple[PromptLabelSample, List[GoldText]]:
    """The reference's blank-entity augmentation for generative-decoder models: the whole batch is
    prompted with the single type "entity", every gold span is its positive, and the decoder still
    learns each span's real type (the span classifier learns to find entities of any type)."""
    blank = [GoldText(t.words, [(s, e, BLANK_ENTITY) for s, e, _ in t.spans], t.corpus, t.relations) for t in texts]
    sample = PromptLabelSample(
        labels=[[BLANK_ENTITY] for _ in texts],
        label_mask=[[1] for _ in texts],
        positives=[[BLANK_ENTITY] if t.spans else [] for t in texts],
        negatives=[[] for _ in texts],
        dropped_positives=[[] for _ in texts],
        mode=mode,
    )
    return sample, blank


class BatchBuilder:
    """Samples each batch's prompt labels (positives plus negatives, GLiNER's recipe) and builds
    inputs and targets for one checkpoint family."""

    def __init__(
        self,
        config: GlinerConfig,
        inputs: InputBuilder,
        sampling: LabelSamplingConfig,
        corpus_labels: Dict[str, List[str]],
        seed: int = 0,
        decoder_tokenizer=None,
    ):
        self.config = config
        self.decoder_tokenizer = decoder_tokenizer
        self.inputs = inputs
        self.sampling = sampling
        self.corpus_labels = corpus_labels
        self.rng = random.Random(seed)

    def sample_labels(
        self,
        texts: Sequence[GoldText],
        gold: Optional[Sequence[Sequence[str]]] = None,
        corpus_labels: Optional[Dict[str, List[str]]] = None,
    ) -> PromptLabelSample:
        """Prompt labels per example: the gold ones (default: the span labels) plus negatives from
        the example's corpus label set (default: the entity label sets)."""
        if gold is None:
            gold = [[label for _, _, label in text.spans] for text in texts]
        if corpus_labels is None:
            corpus_labels = self.corpus_labels
        corpora = [text.corpus for text in texts]
        known = {c for c in corpora if c is not None}
        pool = sorted({label for c in known for label in corpus_labels.get(c, ())})
        return sample_prompt_labels(
            gold,
            self.rng,
            self.sampling,
            corpora=corpora if known else None,
            corpus_labels=corpus_labels if known else None,
            pool=pool or None,
        )

    def build(
        self,
        texts: Sequence[GoldText],
        sample: Optional[PromptLabelSample] = None,
        prompts: Optional[Sequence[List[int]]] = None,
    ) -> TrainingBatch:
        """Inputs and span/token targets; ``prompts`` (per example) replaces the entity-label
        prompts, e.g. by relex prompts that list relation labels too."""
        sample = sample or self.sample_labels(texts)
        decoder_training = self.config.has_label_decoder and self.decoder_tokenizer is not None
        gold_texts, gold_sample = texts, sample
        # Blank-entity batches train the span form only: the reference's token form prompts
        # "entity" but keeps the sampled labels' token targets, scoring them against padding.
        if decoder_training and not self.config.is_token_decoder and self.rng.random() < self.config.blank_entity_prob:
            sample, texts = blank_entity_batch(texts, sample.mode)
        pieces = [self.inputs.word_pieces(text.words) for text in texts]
        if self.config.bi_encoder:
            encoded = self.inputs.build(pieces)
        else:
            if prompts is None:
                prompts = [self.inputs.prompt_ids(labels) for labels in sample.labels]
            encoded = self.inputs.build(pieces, prompts=prompts)
        label_mask = torch.tensor(sample.padded_label_mask(), dtype=torch.float32)
        if label_mask.numel() == 0:
            label_mask = torch.zeros((len(texts), 0))
        lengths = [len(text.words) for text in texts]
        spans = [[(s, e - 1, label) for s, e, label in text.spans] for text in texts]
        if self.config.is_span_model:
            targets = batch_span_targets(spans, sample.labels, lengths, self.config.max_width, on_too_wide="ignore")
            dense = torch.from_numpy(targets.dense())
            position_mask = torch.from_numpy(targets.span_mask())
            counts = targets.counts
        else:
            width = max(lengths)
            dense = torch.zeros((len(texts), width, sample.num_labels, 3))
            for row, (text_spans, labels, n) in enumerate(zip(spans, sample.labels, lengths)):
                for w, c, channel in token_target_indices(text_spans, labels, n):
                    dense[row, w, c, channel] = 1.0
            position_mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
            counts = {"positives": int(dense[..., 2].sum())}
        decoder = table = None
        if self.config.is_token_decoder:
            table, gold_labels = self._span_table(spans, sample.labels, lengths)
            if decoder_training:
                decoder = self._token_decoder_targets(texts, sample, table, gold_labels)
        elif decoder_training:
            decoder = self._decoder_targets(gold_texts, gold_sample, sample, dense, position_mask)
        return TrainingBatch(encoded, sample, label_mask, dense, position_mask, counts, decoder=decoder, span_table=table)

    def _span_table(self, spans, labels, lengths) -> Tuple[SpanTable, List[List[str]]]:
        """The :class:`SpanTable` of a token-level decoder batch and each example's gold labels,
        in table order. Random spans are drawn as the reference draws them (a start, then a width
        up to ``max_width``; twenty tries per wanted span), from this builder's seeded generator."""
        rows, gold_labels = [], []
        for text_spans, text_labels, count in zip(spans, labels, lengths):
            prompted = set(text_labels)
            gold = sorted((start, end, label) for start, end, label in text_spans if label in prompted and end < count)
            taken = {(start, end) for start, end, _ in gold}
            wanted = int(len(gold) * self.config.neg_spans_ratio) if count else 0
            others: List[Tuple[int, int]] = []
            for _ in range(wanted * 20):
                if len(others) == wanted:
                    break
                start = self.rng.randint(0, count - 1)
                end = start + self.rng.randint(1, min(self.config.max_width, count - start)) - 1
                if (start, end) in others or any(not (end < s or start > e) for s, e in taken):
                    continue
                others.append((start, end))
            rows.append([(start, end, label) for start, end, label in gold] + [(start, end, None) for start, end in others])
            gold_labels.append([label for _, _, label in gold])
        width = max([len(row) for row in rows] + [1])
        num_labels = max([len(text_labels) for text_labels in labels] + [0])
        span_idx = torch.tensor([[(start, end) for start, end, _ in row] + [(0, 0)] * (width - len(row)) for row in rows],
                                dtype=torch.long)
        span_mask = torch.tensor([[True] * len(row) + [False] * (width - len(row)) for row in rows], dtype=torch.bool)
        span_labels = torch.zeros(len(rows), width, num_labels)
        for b, (row, text_labels) in enumerate(zip(rows, labels)):
            for n, (_, _, label) in enumerate(row):
                if label is not None:
                    span_labels[b, n, text_labels.index(label)] = 1.0
        return SpanTable(span_idx, span_mask, span_labels), gold_labels

    def _token_decoder_targets(self, texts, sample: PromptLabelSample, table: SpanTable, gold_labels):
        """Token-level decoder models: each gold entry of the span table (in table order, as the
        reference pairs them with the gold labels sorted by position) and its label's decoder
        tokens; None without gold spans."""
        selected = torch.nonzero(table.span_labels.amax(dim=-1) == 1)
        if not len(selected):
            return None
        names = [label for row in gold_labels for label in row]
        return self._label_targets(selected, names, texts, sample)

    def _label_targets(self, selected, names, texts, sample: PromptLabelSample) -> DecoderTargets:
        """Decoder targets of the ``selected`` spans labelled ``names``, tokenised as the
        reference does (a space before each label, the batch padded with the end-of-sequence id)."""
        from ..modeling.label_decoder import decoder_prompt_tokens, decoder_word_tokens

        tokenizer, config = self.decoder_tokenizer, self.config
        labels = tokenizer(names, padding="longest", truncation=True, return_tensors="pt")
        return DecoderTargets(
            selected,
            labels["input_ids"],
            labels["attention_mask"],
            [decoder_word_tokens(tokenizer, text.words) for text in texts],
            [decoder_prompt_tokens(tokenizer, row, config.ent_token, config.sep_token) for row in sample.labels],
            tokenizer.pad_token_id,
        )

    def _decoder_targets(self, texts, gold_sample: PromptLabelSample, sample: PromptLabelSample,
                         dense: torch.Tensor, position_mask: torch.Tensor):
        """The gold spans' labels as decoder tokens (:meth:`_label_targets`); None without gold
        spans. A span learns its first gold label among the sampled ones (``gold_sample``, also in
        a blank-entity batch), as in the reference; ``sample`` is the prompt the batch reads."""
        gold = (dense.amax(dim=-1) == 1) & position_mask.bool()
        selected = torch.nonzero(gold)
        if not len(selected):
            return None
        first_label = [{} for _ in texts]
        for row, text in enumerate(texts):
            sampled = set(gold_sample.labels[row])
            for start, end, label in text.spans:
                if label in sampled:
                    first_label[row].setdefault((start, end - start - 1), label)
        names = [first_label[row][(start, width)] for row, start, width in selected.tolist()]
        return self._label_targets(selected, names, texts, sample)
