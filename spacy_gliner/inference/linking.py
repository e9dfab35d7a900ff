"""Zero-shot entity linking with a bi-encoder GLiNER: mention vectors, entity vectors, scores.

The torch side of the ``gliner_linker`` component, on plain word lists (no spaCy here):

* entity vectors: the label tower (``GlinerModel.label_vectors``, projection included) reads
  ``entity_text(entity)``, exactly as it reads a label for NER;
* mention vectors: the text tower reads each window of a document once, and a mention's
  vector is the span head's vector for (first word, last word): the same span
  representation the NER head scores against label vectors;
* scores: ``sigmoid(z)`` with ``z = entity_vector . mention_vector / temperature + w . features
  + bias`` (``link_logits``); before training ``w = 0``, ``bias = 0``, ``temperature = 1``, which
  is the NER head's scoring ``sigmoid(entity . mention)``. The features are string-side
  (``spacy_gliner.kb.features``); the weights are learned by the linker's contrastive training.

Everything here also runs with gradients (``mention_tensors``, ``entity_tensors``) for training.

Word vectors from a shared spaCy ``transformer`` (``gliner_linker`` with a ``text_encoder``
listener) can replace the text tower: ``mention_vectors`` / ``mention_tensors`` then take one
(words, text width) tensor per document, the windows count words only (the transformer read
the subwords), and the span head reads the projected words as it reads its own tower's.

Mentions longer than ``max_width`` words: the span marker head builds a span vector only from
its two endpoint words (``out_project(relu([start(w_first); end(w_last)]))``, no width
embedding), and ``SpanMarkerHead.forward`` merely enumerates widths up to ``max_width``. We
apply the same formula to the true first and last words of any mention, so a long mention
gets the vector the head would give with a larger ``max_width`` (identical to the head's own
output for mentions within ``max_width``; see tests). A mention that does not fit in one
encoder window (hundreds of words) is cut at the end of the window owning its first word.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..modeling.checkpoint import GlinerCheckpoint
from ..modeling.inputs import InputBuilder
from .window_batches import check_word_vectors, window_batches, word_vector_batches
from .windows import Window, plan_windows

Mention = Tuple[int, int]  # word offsets [start, end) in the document


def check_linker_checkpoint(config, source: str = "checkpoint") -> None:
    """Linking needs two towers (entities are read like labels) and a span head."""
    if not config.bi_encoder:
        raise ValueError(
            f"{source} is a uni-encoder GLiNER; entity linking needs a bi-encoder checkpoint "
            "(a 'labels_encoder' in gliner_config.json), whose label tower embeds the KB entities."
        )
    if not config.is_span_model:
        raise ValueError(
            f"{source} is a token-level GLiNER (span_mode={config.span_mode!r}); entity linking needs a "
            "span model, whose span head gives the mention vectors."
        )
    if getattr(config, "post_fusion_schema", ""):
        raise ValueError(
            f"{source} has post-fusion layers (post_fusion_schema={config.post_fusion_schema!r}): its label "
            "vectors depend on the text they are scored against, so KB entities cannot be embedded once "
            "and stored; entity linking needs a bi-encoder checkpoint without post-fusion layers."
        )


def link_logits(dots: torch.Tensor, features: Optional[torch.Tensor], weights: Optional[torch.Tensor],
                bias: Optional[torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """``dots / temperature + features @ weights + bias``: the linker's logit for (mention,
    entity) pairs. ``dots`` is (..., N); ``features`` (..., N, F) or None when F = 0."""
    logits = dots / temperature
    if features is not None and weights is not None and features.size(-1):
        logits = logits + features @ weights
    if bias is not None:
        logits = logits + bias
    return logits


def sigmoid_scores(mention: np.ndarray, entities: np.ndarray, features: Optional[np.ndarray] = None,
                   weights: Optional[Sequence[float]] = None, bias: float = 0.0, temperature: float = 1.0) -> np.ndarray:
    """``sigmoid(link_logits)`` for one mention vector (D,) against entity vectors (M, D) and
    their (M, F) features; with no features, bias 0 and temperature 1: ``sigmoid(entities @ mention)``."""
    if entities.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    dots = torch.from_numpy(np.asarray(entities, dtype=np.float32)) @ torch.from_numpy(np.asarray(mention, dtype=np.float32))
    mixed = None if features is None else torch.from_numpy(np.asarray(features, dtype=np.float32))
    w = None if weights is None else torch.tensor(list(weights), dtype=torch.float32)
    logits = link_logits(dots, mixed, w, torch.tensor(float(bias)), temperature)
    return torch.sigmoid(logits).numpy()


class MentionEncoder:
    """Runs one bi-encoder span checkpoint for linking: entity texts and document mentions."""

    def __init__(
        self,
        checkpoint: GlinerCheckpoint,
        batch_size: int = 8,
        entity_batch_size: int = 128,
        max_window_words: Optional[int] = None,
        window_overlap: Optional[int] = None,
    ):
        check_linker_checkpoint(checkpoint.config)
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.model = checkpoint.model
        self.inputs = InputBuilder(checkpoint.tokenizer, checkpoint.config, checkpoint.label_tokenizer)
        self.batch_size = batch_size
        self.entity_batch_size = entity_batch_size
        self.max_window_words = max_window_words or self.config.max_len
        self.window_overlap = window_overlap if window_overlap is not None else 2 * self.config.max_width
        if self.window_overlap >= self.max_window_words:
            raise ValueError(f"window_overlap ({self.window_overlap}) must be smaller than max_window_words ({self.max_window_words}).")
        self._encoder_id: Optional[str] = None

    # -- entities ---------------------------------------------------------------------------
    @property
    def encoder_id(self) -> str:
        """Names the entity encoder for the embedding store: a digest of the label tower's weights
        (and projection), so a store made by other weights is never reused."""
        if self._encoder_id is None:
            digest = hashlib.sha256()
            for prefix in ("label_encoder.", "label_projection."):
                for key, value in sorted(self.model.state_dict().items()):
                    if key.startswith(prefix):
                        digest.update(key.encode("utf-8"))
                        digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._encoder_id = f"gliner-bi-encoder-label-tower:{digest.hexdigest()[:24]}"
        return self._encoder_id

    def encode_entities(self, texts: List[str]) -> np.ndarray:
        """(len(texts), D) float32 entity vectors; the ``encode`` function of the embedding store."""
        if not texts:
            return np.zeros((0, self.config.hidden_size), dtype=np.float32)
        # Similar lengths batched together: less padding for the label tower.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for begin in range(0, len(order), self.entity_batch_size):
                chosen = order[begin : begin + self.entity_batch_size]
                out[chosen] = self.entity_tensors([texts[i] for i in chosen]).float().cpu().numpy()
        return out

    def entity_tensors(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), D) entity vectors in one label-tower pass, in the current grad mode."""
        ids, mask = self.inputs.tokenize_labels(list(texts))
        device = self.model.device
        return self.model.label_vectors(ids.to(device), mask.to(device))

    def weights_changed(self) -> None:
        """Training changed the weights: the entity encoder id (a digest of the label tower) is
        recomputed on next use, so an embedding store made before can never match it."""
        self._encoder_id = None

    # -- mentions -----------------------------------------------------------------------------
    def span_vectors(self, words: torch.Tensor, starts: torch.Tensor, lasts: torch.Tensor) -> torch.Tensor:
        """Span head vectors for spans (first word, last word) of one window's (W, D) word vectors."""
        head = self.model.span_head
        pair = torch.cat([head.project_start(words[starts]), head.project_end(words[lasts])], dim=-1).relu()
        return head.out_project(pair)

    @staticmethod
    def _pick_window(windows: Sequence[Window], start: int, end: int) -> Tuple[int, int]:
        """(window index, clipped end) for a mention: the window owning its first word if the
        mention fits there, else any window holding it whole, else the owner with the mention cut."""
        owner = next(i for i, w in enumerate(windows) if w.own_start <= start < w.own_end)
        if end <= windows[owner].end:
            return owner, end
        for i, w in enumerate(windows):
            if w.start <= start and end <= w.end:
                return i, end
        return owner, windows[owner].end

    def mention_vectors(
        self, docs_words: Sequence[Sequence[str]], docs_mentions: Sequence[Sequence[Mention]],
        word_vectors: Optional[Sequence[torch.Tensor]] = None,
    ) -> List[np.ndarray]:
        """(n_mentions, D) float32 mention vectors per document; each window is encoded once."""
        with torch.inference_mode():
            return [t.float().cpu().numpy() for t in self.mention_tensors(docs_words, docs_mentions, word_vectors)]

    def mention_tensors(
        self, docs_words: Sequence[Sequence[str]], docs_mentions: Sequence[Sequence[Mention]],
        word_vectors: Optional[Sequence[torch.Tensor]] = None,
    ) -> List[torch.Tensor]:
        """(n_mentions, D) mention vectors per document, in the current grad mode (training runs
        this with gradients through the text tower and the span head). ``word_vectors``: per
        document, (words, text width) vectors from a shared transformer on the model's device,
        read instead of the text tower (their gradients reach whoever made them)."""
        dim = self.config.hidden_size
        device = self.model.device
        if word_vectors is not None:
            check_word_vectors(docs_words, word_vectors, self.model.text_width)
        rows: List[List[Optional[torch.Tensor]]] = [[None] * len(m) for m in docs_mentions]
        budget = self.inputs.max_tokens - self.inputs.special_count
        jobs: Dict[Tuple[int, int], List[Tuple[int, int, int]]] = {}  # (doc, window) -> [(mention, start, last)]
        all_windows: Dict[Tuple[int, int], Window] = {}
        pieces: Dict[int, List[List[int]]] = {}
        for doc_index, (words, mentions) in enumerate(zip(docs_words, docs_mentions)):
            if not mentions:
                continue
            for start, end in mentions:
                if not 0 <= start < end <= len(words):
                    raise ValueError(f"mention word span ({start}, {end}) outside a document of {len(words)} words")
            if word_vectors is None:
                pieces[doc_index] = self.inputs.word_pieces(words)
                counts, limit = [len(p) for p in pieces[doc_index]], budget
            else:  # the transformer read the subwords: only the model's word limit cuts windows
                counts, limit = [1] * len(words), self.max_window_words
            windows = plan_windows(doc_index, counts, self.max_window_words, limit, self.window_overlap)
            for mention_index, (start, end) in enumerate(mentions):
                window_index, end = self._pick_window(windows, start, end)
                window = windows[window_index]
                all_windows[(doc_index, window_index)] = window
                jobs.setdefault((doc_index, window_index), []).append((mention_index, start - window.start, end - 1 - window.start))

        if word_vectors is None:
            batches = window_batches(list(jobs), pieces, self.inputs, self.batch_size, device,
                                     lambda inputs: self.model.represent(inputs).words,
                                     window_of=all_windows.__getitem__, length="words")
            keyed = ((batch.jobs, batch.encoded) for batch in batches)
        else:
            key_of = {window: key for key, window in all_windows.items()}
            batches = word_vector_batches(list(all_windows.values()), word_vectors, self.batch_size,
                                          lambda words, mask: self.model.represent_word_vectors(words, mask).words)
            keyed = (([key_of[w] for w in batch.windows], batch.encoded) for batch in batches)
        for keys, encoded in keyed:
            for row, key in enumerate(keys):
                items = jobs[key]
                starts = torch.tensor([s for _, s, _ in items], device=device)
                lasts = torch.tensor([e for _, _, e in items], device=device)
                vectors = self.span_vectors(encoded[row], starts, lasts)
                for position, (mention_index, _, _) in enumerate(items):
                    rows[key[0]][mention_index] = vectors[position]
        return [torch.stack(r) if r else torch.zeros((0, dim), device=device) for r in rows]
