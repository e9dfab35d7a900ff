"""Entity extraction over word sequences: windows, label groups, batched scoring, decoding.

This is the whole inference path below the spaCy component, on plain word lists:
words -> windows -> encoder -> scores -> candidates -> decoded spans.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .decoding import DecodedSpan, greedy_select, merge_adjacent_same_label, span_candidates, token_candidates, token_spans
from ..modeling.checkpoint import GlinerCheckpoint
from ..modeling.inputs import InputBuilder
from ..modeling.label_checks import check_label_lengths, prompt_budget
from ..modeling.label_cache import LabelVectorCache
from .span_grid import spans_inside
from .window_batches import check_word_vectors, window_batches, word_vector_batches
from .windows import Window, plan_windows


# Retrieval scores at most this many times ``label_top_k`` labels in a window (see _retrieved_candidates).
RETRIEVAL_DEPTH_LIMIT = 3


@dataclass
class DecodeSettings:
    threshold: float = 0.5
    nested: bool = False
    multi_label: bool = False
    merge_adjacent: bool = False  # join neighbouring same-label spans (NuNER Zero's recipe)


class EntityExtractor:
    """Runs one loaded GLiNER checkpoint over documents given as word lists.

    ``max_window_words`` defaults to the checkpoint's ``max_len``; ``window_overlap`` to twice
    the maximum span width, which makes window borders invisible in the output for span models.
    """

    def __init__(
        self,
        checkpoint: GlinerCheckpoint,
        batch_size: int = 8,
        max_window_words: Optional[int] = None,
        window_overlap: Optional[int] = None,
        label_chunk_size: int = 4096,
        label_cache_dtype: str = "float32",
        label_top_k: Optional[int] = None,
    ):
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.model = checkpoint.model
        self.inputs = InputBuilder(checkpoint.tokenizer, checkpoint.config, checkpoint.label_tokenizer)
        self.batch_size = batch_size
        self.max_window_words = max_window_words or self.config.max_len
        self.window_overlap = window_overlap if window_overlap is not None else 2 * self.config.max_width
        if self.window_overlap >= self.max_window_words:
            raise ValueError(
                f"window_overlap ({self.window_overlap}) must be smaller than max_window_words "
                f"({self.max_window_words})."
            )
        self.label_chunk_size = label_chunk_size
        self.label_cache = LabelVectorCache(label_cache_dtype) if self.config.bi_encoder else None
        # Bi-encoder span models: score only the top-k labels per window (label_retrieval.py);
        # None scores every label. Ignored by uni-encoder and token-level models.
        self.label_top_k = label_top_k
        if label_top_k is not None and self.model.applies_post_fusion:
            raise ValueError(
                "label_top_k (label retrieval) cannot be used with this checkpoint: its post-fusion layers "
                "make every label vector depend on the window's text and on the other labels, so labels "
                "cannot be ranked or scored apart from the full label set. Leave label_top_k unset."
            )
        self._retriever = None
        self._label_memo = None
        self._inference_model = self.model
        self.precision = "float32"
        # ONNX Runtime backend (modeling/onnx_export.py): its exports, and whether the weights
        # may have changed since the running view was made (a training step)
        self.onnx_exports = None
        self._onnx_stale = False
        # generative label decoder models: how labels are written for selected spans
        self.generation = None
        if self.config.has_label_decoder:
            from ..modeling.label_decoder import GenerationSettings

            self.generation = GenerationSettings()

    def set_generation(
        self, num_sequences: int = 1, constraints: Optional[Sequence[str]] = None, max_new_tokens: Optional[int] = None
    ) -> None:
        """Generative-decoder models: ``num_sequences`` labels per span (beam search when > 1),
        optionally restricted to the ``constraints`` label texts, each at most ``max_new_tokens``
        decoder tokens long. Raises ValueError (``LabelConstraintError``) for unusable settings."""
        from ..modeling.label_decoder import DEFAULT_MAX_GENERATED_TOKENS, GenerationSettings, check_positive, constraint_trie

        if self.generation is None:
            raise ValueError("this checkpoint has no generative label decoder ('labels_decoder' is not set)")
        check_positive(num_sequences, "num_gen_sequences")
        max_new_tokens = DEFAULT_MAX_GENERATED_TOKENS if max_new_tokens is None else max_new_tokens
        check_positive(max_new_tokens, "max_generated_length", "number of decoder tokens")
        self.model.label_decoder.check_room(max_new_tokens)
        trie = None
        if constraints is not None:
            trie = constraint_trie(self.checkpoint.decoder_tokenizer, constraints, self.model.label_decoder.vocab_size)
        self.generation = GenerationSettings(num_sequences, max_new_tokens, trie)

    def accelerate(self, quantize: Optional[str] = None, precision: str = "float32", compile: bool = False, owner: str = "gliner") -> None:
        """Opt-in speed-ups for inference (see modeling/acceleration.py); float32 without them
        is what matches the reference."""
        from ..modeling.acceleration import accelerated

        self._inference_model = accelerated(self.model, quantize, precision, compile, owner)
        self.precision = precision

    def use_onnx(self, exports) -> None:
        """Run the encoders with ONNX Runtime from ``exports`` (an ``OnnxExports``), exporting
        them now unless its files match the weights."""
        self.onnx_exports = exports
        self._inference_model = exports.view(self.model)
        self._onnx_stale = False

    def weights_changed(self) -> None:
        """After a training step: an ONNX export no longer matches; it is checked (and rebuilt
        if the weights differ) before the next forward pass."""
        self._onnx_stale = self.onnx_exports is not None

    @property
    def inference_model(self):
        """What runs the forward passes: the model itself, or a view of it with accelerated or
        ONNX Runtime encoders; training uses ``model``."""
        if self._onnx_stale:
            self.use_onnx(self.onnx_exports)
        return self._inference_model

    def _precision(self):
        from ..modeling.acceleration import precision_context

        return precision_context(self.precision, self.model.device)

    # -- labels -----------------------------------------------------------------------------
    @property
    def text_budget(self) -> int:
        return self.inputs.max_tokens - self.inputs.special_count

    @property
    def prompt_budget(self) -> int:
        return prompt_budget(self.inputs)

    def check_labels(self, label_texts: Sequence[str]) -> None:
        check_label_lengths(self.inputs, label_texts)

    def label_groups(self, label_texts: Sequence[str]) -> List[Sequence[int]]:
        """Uni-encoder: split labels into prompts that fit beside the text. Bi-encoder: one group."""
        if self.config.bi_encoder:
            return [np.arange(len(label_texts))]
        groups: List[List[int]] = [[]]
        used = 1  # the closing separator
        for index, text in enumerate(label_texts):
            cost = self.inputs.label_prompt_length(text)
            if groups[-1] and used + cost > self.prompt_budget:
                groups.append([])
                used = 1
            groups[-1].append(index)
            used += cost
        return groups

    def encode_label_texts(self, texts: List[str]) -> torch.Tensor:
        ids, mask = self.inputs.tokenize_labels(texts)
        model = self.inference_model
        with torch.inference_mode(), self._precision():
            return model.label_vectors(ids.to(model.device), mask.to(model.device)).float()

    def prepare_label_vectors(self, label_texts: Sequence[str], progress: bool = True) -> int:
        """Bi-encoder: make sure every label text has a cached vector; returns how many were computed.

        Checking a million texts costs a quarter of a second, so a list already checked against
        the unchanged cache is not checked again."""
        if self._label_list_memo(label_texts).get("all_cached"):
            return 0
        computed = self.label_cache.fill(label_texts, self.encode_label_texts, progress=progress)
        self._label_list_memo(label_texts)["all_cached"] = True  # after fill: the cache version has changed
        return computed

    def _label_list_memo(self, label_texts: Sequence[str]) -> Dict[object, object]:
        """What costs O(labels) to work out about one label list: whether all its vectors are
        cached, its cache rows, its stored vector matrix per device (a million dict look-ups per
        batch would show up in the per-document time). Kept while the same list, unedited, is used
        with an unchanged cache."""
        key = (id(label_texts), len(label_texts), self.label_cache.version, _ends(label_texts))
        memo = self._label_memo
        if memo is None or memo[0] != key or memo[1] is not label_texts:
            memo = self._label_memo = (key, label_texts, {})
        return memo[2]

    def _label_rows(self, label_texts: Sequence[str]):
        """Cache rows of ``label_texts`` (memoised)."""
        memo = self._label_list_memo(label_texts)
        if "rows" not in memo:
            memo["rows"] = self.label_cache.rows(label_texts)
        return memo["rows"]

    @property
    def label_retriever(self):
        """The :class:`LabelRetriever` used when ``label_top_k`` is set (rebuilt if it changes)."""
        if self.label_top_k is None:
            return None
        if self._retriever is None or self._retriever.top_k != self.label_top_k:
            from .label_retrieval import LabelRetriever

            self._retriever = LabelRetriever(int(self.label_top_k))
        return self._retriever

    # -- documents --------------------------------------------------------------------------
    def windows_for(self, pieces: Sequence[Sequence[List[int]]], prompt_length: int) -> List[Window]:
        budget = self.text_budget - prompt_length
        windows: List[Window] = []
        for doc_index, doc_pieces in enumerate(pieces):
            counts = [len(p) for p in doc_pieces]
            windows.extend(plan_windows(doc_index, counts, self.max_window_words, budget, self.window_overlap))
        return windows

    def windows_for_word_vectors(self, doc_vectors: Sequence[torch.Tensor]) -> List[Window]:
        """Windows over documents given as word vectors: only the word limit applies (the
        subwords were read by whoever made the vectors)."""
        windows: List[Window] = []
        for doc_index, vectors in enumerate(doc_vectors):
            count = int(vectors.size(0))
            windows.extend(plan_windows(doc_index, [1] * count, self.max_window_words, self.max_window_words, self.window_overlap))
        return windows

    def extract(
        self,
        docs_words: Sequence[Sequence[str]],
        label_texts: Sequence[str],
        settings: DecodeSettings,
        word_vectors: Optional[Sequence[torch.Tensor]] = None,
    ) -> List[List[DecodedSpan]]:
        """Decoded spans per document, in document order; labels index into ``label_texts``.

        ``word_vectors`` (bi-encoders): per document, the (words, text width) vectors a shared
        transformer pooled from its subwords, on the model's device; they replace the text tower.
        """
        results: List[List[DecodedSpan]] = [[] for _ in docs_words]
        if not label_texts or not any(docs_words):
            return results
        if word_vectors is not None:
            self._check_word_vectors(docs_words, word_vectors)
            pieces = None
        else:
            pieces = [self.inputs.word_pieces(words) for words in docs_words]
        decoder_words = None  # generative models: the decoder token ids of every word, per document
        if self.generation is not None:
            from ..modeling.label_decoder import decoder_word_tokens

            tokenizer = self.checkpoint.decoder_tokenizer
            decoder_words = [decoder_word_tokens(tokenizer, words) for words in docs_words]
        candidates: Dict[int, List[DecodedSpan]] = {}
        if self.config.bi_encoder:
            self.prepare_label_vectors(label_texts)
        for group in self.label_groups(label_texts):
            # the caller's own list when it is one group: row look-ups are memoised on it
            group_texts = label_texts if len(group) == len(label_texts) else [label_texts[i] for i in group]
            prompt = [] if self.config.bi_encoder else self.inputs.prompt_ids(group_texts)
            batches = self._vector_batches(word_vectors) if pieces is None else self._text_batches(pieces, prompt)
            found = self._score_windows(batches, group, group_texts, settings, decoder_words)
            for doc_index, spans in found.items():
                candidates.setdefault(doc_index, []).extend(spans)
        for doc_index, spans in candidates.items():
            selected = greedy_select(spans, settings.nested, settings.multi_label)
            results[doc_index] = merge_adjacent_same_label(selected) if settings.merge_adjacent else selected
        return results

    def _text_batches(self, pieces, prompt):
        """``batches(encode)`` over the windows of documents given as subwords, encoded by the text tower."""
        windows = self.windows_for(pieces, len(prompt))

        def batches(encode):
            return window_batches(
                windows, pieces, self.inputs, self.batch_size, self.model.device,
                lambda inputs: encode(lambda: self.inference_model.represent(inputs)), prompt=prompt,
            )

        return batches

    def _vector_batches(self, word_vectors):
        """``batches(encode)`` over the windows of documents given as word vectors."""
        windows = self.windows_for_word_vectors(word_vectors)

        def batches(encode):
            return word_vector_batches(
                windows, word_vectors, self.batch_size,
                lambda words, mask: encode(lambda: self.inference_model.represent_word_vectors(words, mask)),
            )

        return batches

    def _check_word_vectors(self, docs_words, word_vectors) -> None:
        if not self.config.bi_encoder:
            raise ValueError("word vectors from a shared transformer replace the text tower of bi-encoder checkpoints only")
        check_word_vectors(docs_words, word_vectors, self.model.text_width)

    def _score_windows(self, batches, group, label_texts, settings, decoder_words=None) -> Dict[int, List[DecodedSpan]]:
        """Candidates per document, labels already mapped to positions in the full label list.

        ``batches(encode)`` yields the window batches (``_text_batches``, ``_vector_batches``);
        ``encode(represent)`` turns a batch's word representations into what is scored below.
        ``decoder_words``: generative models' decoder token ids per document word (``extract``)."""
        group = np.asarray(group)
        found: Dict[int, List[DecodedSpan]] = {}
        device = self.model.device
        # post-fusion models: span vectors depend on the labels, so no per-batch span vectors here
        fused = self.model.applies_post_fusion
        rows = self._label_rows(label_texts) if self.config.bi_encoder else None
        retrieve = (self.config.bi_encoder and self.config.is_span_model and not fused and self.label_top_k is not None
                    and self.label_top_k < len(label_texts))
        # bi-encoder span models with many labels (or retrieving some): span vectors once per
        # batch, then one product per label chunk; with few, the scoring folds into the labels
        bi_span = self.config.bi_encoder and self.config.is_span_model and not fused and (
            retrieve or not self.inference_model.span_head.folds_labels(len(label_texts)))
        if decoder_words is not None:
            from ..modeling.label_decoder import decoder_prompt_tokens

            config = self.config
            prompt_tokens = decoder_prompt_tokens(
                self.checkpoint.decoder_tokenizer, label_texts, config.ent_token, config.sep_token
            )
            generative = self._token_generative_candidates if config.is_token_decoder else self._generative_candidates

        def encode(represent):
            with self._precision():
                reps = represent()
                spans = self.inference_model.span_head(reps.words, reps.word_mask).float() if bi_span else None
            return reps, spans

        with torch.inference_mode():
            for batch in batches(encode):
                reps, spans = batch.encoded
                if decoder_words is not None:
                    chunks = [generative(reps, batch.windows, group, settings, decoder_words, prompt_tokens)]
                elif retrieve:
                    chunks = [self._retrieved_candidates(spans, batch.windows, label_texts, rows, group, settings, device)]
                else:
                    chunks = self._chunk_candidates(reps, spans, batch.windows, label_texts, rows, group, settings, device)
                for by_doc in chunks:
                    for doc_index, doc_spans in by_doc.items():
                        found.setdefault(doc_index, []).extend(doc_spans)
        return found

    def _generative_candidates(self, reps, batch_windows, group, settings, decoder_words, prompt_tokens) -> Dict[int, List[DecodedSpan]]:
        """Candidates by document, each carrying the labels the decoder wrote for it.

        As in the reference, every valid span whose best probability passes the threshold is
        given to the decoder (all of one batch at once: the reference's prefix padding depends on
        the batch, see modeling/label_decoder.py). ``prompt_tokens``: the label prompt's decoder
        token ids."""
        from ..modeling.label_decoder import reference_prefix_length

        with self._precision():
            logits, span_reps = self.inference_model.score_spans(reps, None, only_valid_spans=True)
        logits = logits.float()
        by_doc = span_candidates(logits, batch_windows, settings.threshold, group, not settings.multi_label)
        lengths = torch.tensor([w.length for w in batch_windows])
        keep = (torch.sigmoid(logits.max(dim=-1).values) > settings.threshold) & spans_inside(
            lengths, *logits.shape[1:3]
        ).to(logits.device)
        selected = torch.nonzero(keep)  # (M, 3) window, start, width; the reference's order
        if not len(selected):
            return by_doc
        word_tokens = [decoder_words[w.doc_index][w.start : w.end] for w in batch_windows]
        floor = reference_prefix_length(
            keep.flatten(1).sum(dim=1).tolist(), keep[0].numel(), word_tokens, [len(prompt_tokens)] * len(word_tokens),
            self.config.max_width,
        )
        with torch.inference_mode():
            prefixes, _ = self.model.label_decoder.prefixes(
                span_reps, selected, word_tokens, floor, self.generation.max_new_tokens
            )
        labels_written = self._write_labels(prefixes)
        written = {}
        for m, (row, start, width) in enumerate(selected.tolist()):
            window = batch_windows[row]
            doc_start = window.start + start
            written[(window.doc_index, doc_start, doc_start + width + 1)] = labels_written[m]
        return {
            doc_index: [replace(span, generated=written[(doc_index, span.start, span.end)]) for span in spans]
            for doc_index, spans in by_doc.items()
        }

    def _write_labels(self, prefixes: torch.Tensor) -> List[tuple]:
        """The decoder's labels for each prefix: ``num_sequences`` texts, best first."""
        tokenizer = self.checkpoint.decoder_tokenizer
        ids = self.model.label_decoder.generate(prefixes, self.generation, tokenizer.eos_token_id, tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        k = self.generation.num_sequences
        return [tuple(texts[m * k : (m + 1) * k]) for m in range(len(prefixes))]

    def _token_generative_candidates(self, reps, batch_windows, group, settings, decoder_words, prompt_tokens) -> Dict[int, List[DecodedSpan]]:
        """Token-level decoder models, as the reference runs them: spans are read off the token
        scores (``token_spans``), the span layer scores each against every label, the spans whose
        best probability exceeds 0.5 go to the decoder (a fixed rule of the reference, whatever
        the threshold) and every (span, label) above the threshold is a candidate, carrying the
        labels written for its span (none when the decoder did not read it)."""
        from ..modeling.label_decoder import token_span_contexts

        model = self.inference_model
        with self._precision():
            found = token_spans(model.score(reps).float(), settings.threshold)
        width = max([len(spans) for spans in found] + [1])
        span_idx = torch.zeros(len(found), width, 2, dtype=torch.long)
        for row, spans in enumerate(found):
            if spans:
                span_idx[row, : len(spans)] = torch.tensor(spans)
        with self._precision():
            logits, vectors = model.score_token_spans(reps, span_idx.to(reps.words.device))
        probs = torch.sigmoid(logits.float()).cpu()
        present = torch.arange(width)[None, :] < torch.tensor([len(spans) for spans in found])[:, None]
        kept = (probs.max(dim=-1).values > 0.5) & present
        written: Dict[tuple, tuple] = {}
        if kept.any():
            chosen = kept.nonzero().tolist()  # (window, table position) in the reference's order
            span_tokens, floor = None, 0
            if self.config.full_decoder_context:
                words = [decoder_words[w.doc_index][w.start : w.end] for w in batch_windows]
                span_tokens, floor = token_span_contexts(
                    found, chosen, words, [prompt_tokens] * len(words), self.checkpoint.decoder_tokenizer.pad_token_id
                )
            rows, positions = kept.nonzero(as_tuple=True)
            with torch.inference_mode():
                prefixes, _ = self.model.label_decoder.prefix_embeddings(
                    vectors[rows.to(vectors.device), positions.to(vectors.device)], span_tokens, floor,
                    self.generation.max_new_tokens,
                )
            written = dict(zip(map(tuple, chosen), self._write_labels(prefixes)))
        by_doc: Dict[int, List[DecodedSpan]] = {}
        for row, n, label in (probs > settings.threshold).logical_and(present.unsqueeze(-1)).nonzero().tolist():
            window = batch_windows[row]
            start, end = found[row][n]
            doc_start = window.start + start
            if end + 1 > window.length or not window.own_start <= doc_start < window.own_end:
                continue
            by_doc.setdefault(window.doc_index, []).append(DecodedSpan(
                doc_start, window.start + end + 1, int(group[label]), float(probs[row, n, label]), written.get((row, n))
            ))
        return by_doc

    def _chunk_candidates(self, reps, spans, batch_windows, label_texts, rows, group, settings, device):
        """Candidates by document per label chunk: every label is scored."""
        for offset, labels in self._label_chunks(label_texts, device, rows=rows):
            if spans is not None:
                logits = torch.einsum("bwkd,bcd->bwkc", spans, labels.unsqueeze(0).expand(spans.size(0), -1, -1))
            else:
                with self._precision():
                    logits = self.inference_model.score(reps, labels, only_valid_spans=True).float()
            label_ids = group[offset : offset + logits.size(-1 if self.config.is_span_model else -2)]
            if self.config.is_span_model:
                yield span_candidates(
                    logits, batch_windows, settings.threshold, label_ids, not settings.multi_label
                )
            else:
                yield token_candidates(logits, batch_windows, settings.threshold, label_ids)

    def _retrieved_candidates(self, spans, batch_windows, label_texts, rows, group, settings, device):
        """Candidates by document, scoring only each window's retrieved labels exactly.

        A window's ``label_top_k`` best-ranked labels are scored first. While labels in the lower
        half of what was just scored still pass the threshold on some span, the ranking's border
        is cutting through labels that matter to this window (e.g. many near-synonyms of its
        entities' types), so the next ones are scored too, doubling the depth up to
        ``RETRIEVAL_DEPTH_LIMIT`` x ``label_top_k``. Windows whose shortlist tails are clean cost
        nothing more."""
        retriever = self.label_retriever
        lengths = torch.tensor([w.length for w in batch_windows])
        queries = retriever.queries(spans, lengths)
        deepest = min(len(rows), retriever.top_k * RETRIEVAL_DEPTH_LIMIT)
        ranked = retriever.select(
            queries,
            lambda begin, end: self.label_cache.vectors_for_rows(rows[begin:end], device),
            len(rows),
            key=(id(rows), len(rows), self.label_cache.version),
            stored=self._stored_label_matrix(label_texts, device),
            vectors_at=lambda positions: self.label_cache.vectors_for_rows(rows[positions], device),
            depth=deepest,
        ).cpu().numpy()  # (B, deepest) positions in label_texts, best first
        inside = spans_inside(lengths, *spans.shape[1:3]).to(spans.device)
        found: Dict[int, List[DecodedSpan]] = {}
        open_windows = np.arange(len(batch_windows))
        begin, end = 0, min(retriever.top_k, deepest)
        while True:
            chosen = ranked[open_windows, begin:end]
            labels = self.label_cache.vectors_for_rows(rows[chosen.reshape(-1)], device).view(*chosen.shape, -1)
            logits = torch.einsum("bwkd,bcd->bwkc", spans[open_windows], labels)
            windows = [batch_windows[i] for i in open_windows]
            for doc_index, doc_spans in span_candidates(logits, windows, settings.threshold, group[chosen], not settings.multi_label).items():
                found.setdefault(doc_index, []).extend(doc_spans)
            if end >= deepest:
                return found
            tail = torch.sigmoid(logits[..., (end - begin) // 2 :].amax(dim=-1))  # (b, W, K)
            saturated = ((tail >= settings.threshold) & inside[open_windows]).flatten(1).any(dim=1)
            open_windows = open_windows[saturated.cpu().numpy()]
            if not len(open_windows):
                return found
            begin, end = end, min(2 * end, deepest)

    def _stored_label_matrix(self, label_texts: Sequence[str], device) -> torch.Tensor:
        """The label set's vectors in the cache's dtype on ``device``: a zero-copy view of the
        (possibly memory-mapped) cache when its rows are consecutive stored rows, else one
        gathered copy (memoised)."""
        memo = self._label_list_memo(label_texts)
        key = ("stored", str(device))
        if key not in memo:
            memo[key] = self.label_cache.stored_tensor(self._label_rows(label_texts)).to(device)
        return memo[key]

    def _label_chunks(self, label_texts, device, rows=None):
        """Uni-encoder: the prompt's own labels. Bi-encoder: cached vectors, in bounded chunks.

        Post-fusion models get one chunk with every label: labels attend to each other (and to
        the window), so a chunk's scores would differ from the reference's whole-set ones."""
        if not self.config.bi_encoder:
            yield 0, None
            return
        if rows is None:
            rows = self.label_cache.rows(label_texts)
        chunk = max(len(label_texts), 1) if self.model.applies_post_fusion else self.label_chunk_size
        for begin in range(0, len(label_texts), chunk):
            yield begin, self.label_cache.vectors_for_rows(rows[begin : begin + chunk], device)


def _ends(texts: Sequence[str]):
    """A cheap check that a memoised label list was not edited in place since."""
    return (texts[0], texts[-1]) if len(texts) else ()
