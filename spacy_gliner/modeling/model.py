"""The GLiNER network: encoders, word contextualisation and a scoring head, assembled from a config."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from .config import GlinerConfig
from .encoders import LabelEncoder, TextEncoder, build_transformer, gather_prompt_vectors, pool_words
from .heads import SpanMarkerHead, TokenScorer
from .layers import WordLSTM, feed_forward


@dataclass
class EncodedBatch:
    """Model inputs for a batch of windows.

    ``words_mask`` maps each subword to its 1-based word index (0 elsewhere). For uni-encoder
    models the label prompt is inside ``input_ids``; for bi-encoder models labels come as vectors.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    words_mask: torch.Tensor
    num_words: torch.Tensor

    def to(self, device: torch.device) -> "EncodedBatch":
        return EncodedBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.words_mask, self.num_words)))


@dataclass
class WordRepresentations:
    words: torch.Tensor  # (B, W, D) after the optional LSTM
    word_mask: torch.Tensor  # (B, W)
    prompt_vectors: Optional[torch.Tensor]  # (B, C, D) uni-encoder label vectors, before projection
    prompt_mask: Optional[torch.Tensor]
    token_embeddings: torch.Tensor  # (B, T, D), kept for heads that read other prompt markers


def relation_head_config(config: GlinerConfig) -> Dict[str, Any]:
    """The config keys :func:`relations.head.build_relation_head` reads, from a relex config."""
    return {
        "relations_layer": config.relations_layer,
        "triples_layer": config.raw.get("triples_layer"),
        "hidden_size": config.hidden_size,
        "dropout": config.dropout,
        "span_mode": config.span_mode,
    }


class GlinerModel(nn.Module):
    def __init__(self, config: GlinerConfig, encoder: nn.Module, label_encoder: Optional[nn.Module] = None):
        super().__init__()
        self.config = config
        self.text_encoder = TextEncoder(encoder, config.hidden_size)
        self.text_width = int(encoder.config.hidden_size)  # the text tower's subword vectors, before projection
        if config.bi_encoder:
            if label_encoder is None:
                raise ValueError("a bi-encoder GLiNER needs a label encoder")
            self.label_encoder = LabelEncoder(label_encoder, config.hidden_size)
        if config.num_rnn_layers > 0:
            self.word_lstm = WordLSTM(config.hidden_size, config.num_rnn_layers)
        if config.is_span_model:
            self.span_head = SpanMarkerHead(config.hidden_size, config.max_width, config.dropout, config.span_mode)
            self.label_projection = feed_forward(
                config.hidden_size, config.hidden_size, config.hidden_size * 4, config.dropout
            )
        else:
            self.token_scorer = TokenScorer(config.hidden_size, config.dropout)
            if config.relex or config.is_token_decoder:
                # Token-level relex (reference UniEncoderTokenRelexModel) is built on the span relex
                # model: it keeps the label projection (applied before the token scorer) and a span
                # layer (TokenMarker, the markerV0 layout) that turns decoded entity boundaries into
                # relation-argument vectors. The token-level decoder model has the same two layers:
                # its span layer scores the spans the token scores find and gives the decoder their
                # vectors; its label projection is saved but never applied (the reference's token
                # decoder scores raw label vectors), see finish_label_vectors.
                self.span_head = SpanMarkerHead(config.hidden_size, config.max_width, config.dropout, "markerV0")
                self.label_projection = feed_forward(
                    config.hidden_size, config.hidden_size, config.hidden_size * 4, config.dropout
                )
        if config.post_fusion_schema:
            from .fusion import PostFusion

            # the reference sizes the heads from the text encoder's config
            self.post_fusion = PostFusion(
                config.hidden_size,
                encoder.config.num_attention_heads,
                config.num_post_fusion_layers,
                config.dropout,
                config.post_fusion_schema,
            )
        if config.has_label_decoder:
            from .label_decoder import LabelDecoder

            self.label_decoder = LabelDecoder(
                config.labels_decoder_config, config.hidden_size, config.dropout, config.full_decoder_context
            )
        if config.relex:
            from .relations.head import build_relation_head

            # Relex checkpoints: the relation part (adjacency, pair projection) on top of the span model.
            self.relation_head = build_relation_head(relation_head_config(config))

    @classmethod
    def from_config(cls, config: GlinerConfig) -> "GlinerModel":
        """Random weights in the shape the config describes (loading fills them in)."""
        if config.encoder_config is None:
            raise ValueError("config has no encoder_config; resolve it before building the model")
        encoder = build_transformer(config.encoder_config)
        label_encoder = build_transformer(config.labels_encoder_config) if config.bi_encoder else None
        return cls(config, encoder, label_encoder)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def applies_post_fusion(self) -> bool:
        """Label vectors depend on the window's text (fusion.py): bi-encoder models with post-fusion
        layers. Uni-encoder checkpoints may hold such layers, but the reference (gliner 0.2.29)
        never calls them, so neither do we.

        For these models the label tower's output is not final: ``finish_label_vectors`` leaves
        it as is (what the label cache stores is still text-independent), and scoring fuses it
        with each window's words, then projects it (span models)."""
        return self.config.bi_encoder and hasattr(self, "post_fusion")

    # -- representations -------------------------------------------------------------------
    def represent(self, batch: EncodedBatch) -> WordRepresentations:
        tokens = self.text_encoder(batch.input_ids, batch.attention_mask)
        words, word_mask = pool_words(tokens, batch.words_mask, batch.num_words, self.config.subtoken_pooling)
        prompts = prompt_mask = None
        if not self.config.bi_encoder:
            prompts, prompt_mask = gather_prompt_vectors(
                tokens, batch.input_ids, batch.attention_mask, self.config.class_token_index, self.config.embed_ent_token
            )
        return WordRepresentations(self._contextualize(words, word_mask), word_mask, prompts, prompt_mask, tokens)

    def represent_word_vectors(self, encoder_words: torch.Tensor, word_mask: torch.Tensor) -> WordRepresentations:
        """Bi-encoder: representations from word vectors another model already pooled from the
        text tower's subwords (a shared spaCy ``transformer``, components/listener.py), shaped
        (B, W, encoder width). What ``represent`` does after pooling is done here: the projection
        to the GLiNER hidden size (it commutes with first/last/mean pooling, being affine)."""
        if not self.config.bi_encoder:
            raise ValueError("word vectors from another encoder replace the text tower of bi-encoder models only")
        projection = getattr(self.text_encoder, "projection", None)
        words = projection(encoder_words) if projection is not None else encoder_words
        return WordRepresentations(self._contextualize(words, word_mask), word_mask, None, None, words)

    def drop_text_tower(self) -> None:
        """Bi-encoders whose text tower is a shared spaCy ``transformer``: free this copy of it.
        Word vectors then come through ``represent_word_vectors``; the projection stays here."""
        if not self.config.bi_encoder:
            raise ValueError("only a bi-encoder's text tower can be held by another component")
        self.text_encoder.transformer = None

    def _contextualize(self, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        # The reference bi-encoder (gliner 0.2.29) holds LSTM weights but never applies them.
        if hasattr(self, "word_lstm") and not self.config.bi_encoder:
            return self.word_lstm(words, word_mask)
        return words

    def label_vectors(self, label_input_ids: torch.Tensor, label_attention_mask: torch.Tensor) -> torch.Tensor:
        """Bi-encoder: (N, D) label vectors ready for scoring (projection included for span models)."""
        pooled = self.label_encoder(label_input_ids, label_attention_mask)
        return self.finish_label_vectors(pooled)

    def finish_label_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        if self.applies_post_fusion:
            return vectors  # projected after fusion, per window (see score_spans)
        projects = hasattr(self, "label_projection") and not self.config.is_token_decoder
        return self.label_projection(vectors) if projects else vectors

    def score_token_spans(
        self, reps: WordRepresentations, span_idx: torch.Tensor, labels: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Token-level decoder models: (B, N, C) logits of the spans ``span_idx`` (B, N, 2), word
        start and end inclusive, against the label vectors the token scorer reads (``score``),
        and the (B, N, D) span vectors they came from."""
        reps, labels = self._scoring_labels(reps, labels, None)
        spans = self.span_head.spans_at(reps.words, span_idx)
        return torch.einsum("bnd,bcd->bnc", spans, labels), spans

    def fuse(
        self, reps: WordRepresentations, labels: torch.Tensor, label_mask: Optional[torch.Tensor] = None
    ) -> Tuple[WordRepresentations, torch.Tensor]:
        """Post-fusion: (B, C, D) label-tower vectors and the window's words attend to each other.

        As in the reference, label vectors are zeroed at padded label positions (``label_mask``,
        (B, C); all labels are real when omitted) before and after the fusion."""
        if label_mask is None:
            label_mask = torch.ones(labels.shape[:2], dtype=torch.bool, device=labels.device)
        keep = label_mask.unsqueeze(-1).to(labels.dtype)
        labels, words = self.post_fusion(labels * keep, reps.words, label_mask, reps.word_mask)
        return replace(reps, words=words), labels * keep

    # -- scoring ------------------------------------------------------------------------------
    def score(
        self,
        reps: WordRepresentations,
        labels: Optional[torch.Tensor] = None,
        only_valid_spans: bool = False,
        label_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Logits: (B, W, K, C) for span models, (B, W, C, 3) for token-level models.

        ``labels`` are finished label vectors, (C, D) shared or (B, C, D); uni-encoder models
        take them from the prompt when not given. ``only_valid_spans``: spans past a
        sentence's last word are not computed (their logits are 0; decoding and the loss skip them).
        ``label_mask`` (B, C): which labels are real, read only by post-fusion models (their
        labels attend to each other, so padded ones must be masked out).
        """
        reps, labels = self._scoring_labels(reps, labels, label_mask)
        if self.config.is_span_model:  # logits without span vectors where that is cheaper
            return self.span_head.logits(reps.words, labels, reps.word_mask if only_valid_spans else None)
        return self.token_scorer(reps.words, labels)

    def score_spans(
        self,
        reps: WordRepresentations,
        labels: Optional[torch.Tensor] = None,
        only_valid_spans: bool = False,
        label_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Span models: (B, W, K, C) logits and the (B, W, K, D) span representations they came from."""
        reps, labels = self._scoring_labels(reps, labels, label_mask)
        spans = self.span_head(reps.words, reps.word_mask if only_valid_spans else None)
        return torch.einsum("bwkd,bcd->bwkc", spans, labels), spans

    def _scoring_labels(
        self, reps: WordRepresentations, labels: Optional[torch.Tensor], label_mask: Optional[torch.Tensor]
    ) -> Tuple[WordRepresentations, torch.Tensor]:
        """(B, C, D) label vectors to score against, and the word representations to score
        (fused with the labels for post-fusion models, else ``reps`` unchanged)."""
        if labels is None:
            labels = self.finish_label_vectors(reps.prompt_vectors)
        if labels.dim() == 2:
            labels = labels.unsqueeze(0).expand(reps.words.size(0), -1, -1)
        if self.applies_post_fusion:
            reps, labels = self.fuse(reps, labels, label_mask)
            if self.config.is_span_model:
                labels = self.label_projection(labels)
        return reps, labels

    def forward(self, batch: EncodedBatch, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.score(self.represent(batch), labels)
