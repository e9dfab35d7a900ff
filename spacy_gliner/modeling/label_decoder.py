"""The generative label decoder of UniEncoderSpanDecoder checkpoints: a GPT-2-style causal
language model that writes a label for each span the span head selects.

For every selected span the decoder reads a prefix: the span's vector (projected to the
decoder's width when the two differ), then, with ``full_decoder_context``, the decoder's own
token embeddings of the span's words. Prefixes are left-padded with zero vectors to one length
and attended to in full, as gliner 0.2.29 runs them; the padding length follows the reference's
rule (see :func:`reference_prefix_length`), so the same batch generates the same labels.
Generation is Hugging Face ``generate`` on the decoder (greedy, or beam search returning
``num_sequences`` labels), optionally restricted to a list of label strings by a token trie.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .layers import feed_forward

# Tokens generated for one label when the caller sets no bound (the reference's default).
DEFAULT_MAX_GENERATED_TOKENS = 15


class LabelConstraintError(ValueError):
    """A list of labels to constrain generation to is empty or cannot be tokenised."""


@dataclass
class GenerationSettings:
    """How labels are generated: ``num_sequences`` > 1 runs beam search with that many beams and
    returns every beam; ``constraints`` (token-id sequences, each ending in the end-of-sequence id)
    restrict every label to one of them."""

    num_sequences: int = 1
    max_new_tokens: int = DEFAULT_MAX_GENERATED_TOKENS
    constraints: Optional["LabelTrie"] = None


class LabelTrie:
    """Token-id prefixes of the allowed labels: which tokens may follow a generated prefix."""

    def __init__(self, sequences: Sequence[Sequence[int]]):
        self.root: Dict[int, dict] = {}
        for sequence in sequences:
            node = self.root
            for token in sequence:
                node = node.setdefault(int(token), {})

    def next_tokens(self, prefix: Sequence[int]) -> List[int]:
        """Tokens allowed after ``prefix``; none when the prefix left the trie."""
        node = self.root
        for token in prefix:
            node = node.get(int(token))
            if node is None:
                return []
        return list(node)


class NumericalGuard:
    """The reference's last logits step during generation: -inf becomes the dtype's minimum,
    values are clamped to +-1e9 and 1e-6 is added (beam scores sum these, so it is kept)."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        floor = torch.tensor(torch.finfo(scores.dtype).min, device=scores.device)
        scores = torch.where(torch.isneginf(scores), floor, scores)
        return torch.clamp(scores, min=-1e9, max=1e9) + 1e-6


def hf_decoder_config(config: Dict[str, Any]):
    """The decoder's Hugging Face config object from the dict ``gliner_config.json`` holds."""
    from transformers import CONFIG_MAPPING

    data = dict(config)
    data["model_type"] = data.get("model_type", "gpt2")
    if data["model_type"] not in CONFIG_MAPPING:
        raise ValueError(f"labels_decoder_config has model_type {data['model_type']!r}, which transformers does not know")
    return CONFIG_MAPPING[data["model_type"]](**data)


def check_room(max_positions: Optional[int], following_tokens: int, setting: str = "max_generated_length") -> None:
    """A prefix (at least the span vector) and ``following_tokens`` must fit a decoder that
    embeds ``max_positions`` positions (None: no bound); raises ValueError naming ``setting``."""
    if max_positions is not None and following_tokens + 1 > max_positions:
        raise ValueError(
            f"{setting} is {following_tokens} decoder tokens, but the label decoder embeds only "
            f"{max_positions} positions, one of which the span's vector takes; set {setting} "
            f"to at most {max_positions - 1}."
        )


class LabelDecoder(nn.Module):
    def __init__(self, decoder_config: Dict[str, Any], encoder_hidden_size: int, dropout: float, full_context: bool = True):
        super().__init__()
        from transformers import AutoModelForCausalLM

        self.language_model = AutoModelForCausalLM.from_config(hf_decoder_config(decoder_config))
        self.hidden_size = self.language_model.config.hidden_size
        self.full_context = full_context
        if encoder_hidden_size != self.hidden_size:
            self.projection = feed_forward(encoder_hidden_size, self.hidden_size, self.hidden_size * 4, dropout)

    @property
    def vocab_size(self) -> int:
        return self.language_model.get_input_embeddings().num_embeddings

    @property
    def max_positions(self) -> Optional[int]:
        """Positions the decoder can embed (GPT-2's ``n_positions``); None where it names none."""
        return getattr(self.language_model.config, "max_position_embeddings", None)

    def check_room(self, following_tokens: int) -> None:
        check_room(self.max_positions, following_tokens)

    def span_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.projection(vectors) if hasattr(self, "projection") else vectors

    def prefixes(
        self,
        span_reps: torch.Tensor,
        selected: torch.Tensor,
        word_tokens: Sequence[Sequence[Sequence[int]]],
        padding_floor: int = 0,
        following_tokens: int = 0,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(M, T, D) prefixes of the selected spans and their (M, T) mask of real positions.

        ``span_reps`` (B, W, K, H) and ``selected`` (M, 3) rows of (window, start, width), in
        the order labels are wanted. ``word_tokens[b][w]``: decoder token ids of word ``w`` of
        window ``b`` (read only with full context). ``padding_floor``: the least number of token
        slots after the span vector (see :func:`reference_prefix_length`). Generation attends to
        every position, as the reference does; training masks the padding, as it does there.
        ``following_tokens``: the tokens that will follow the prefix (see :meth:`prefix_embeddings`).
        """
        b, s, k = selected.unbind(-1)
        vectors = span_reps[b, s, k]
        if not self.full_context:
            return self.prefix_embeddings(vectors, None)
        span_tokens = [
            [token for word in word_tokens[row][start : start + width + 1] for token in word]
            for row, start, width in selected.tolist()
        ]
        return self.prefix_embeddings(vectors, span_tokens, padding_floor, following_tokens)

    def prefix_embeddings(
        self,
        vectors: torch.Tensor,
        span_tokens: Optional[Sequence[Sequence[int]]],
        padding_floor: int = 0,
        following_tokens: int = 0,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(M, T, D) prefixes and their (M, T) mask of real positions, from the (M, H) span vectors
        and, with full context, each span's decoder token ids (``span_tokens``, None without):
        the projected vector, then the span's tokens, right-aligned after at least
        ``padding_floor`` token slots. The span and token forms differ only in which tokens a
        span reads (:func:`token_span_decoder_tokens`).

        A prefix and the ``following_tokens`` generated (or teacher-forced) after it must fit
        the decoder's positions. Where the reference's padding rule would pass that bound (a
        batch with a long window and a long label prompt; gliner 0.2.29 then fails with an
        IndexError), the padding is shortened to fit and a span's tokens keep their last ones,
        those nearest the label the decoder writes next."""
        vectors = self.span_vectors(vectors)
        if span_tokens is None:
            return vectors.unsqueeze(1), torch.ones(len(vectors), 1, dtype=torch.bool, device=vectors.device)
        slots = max([len(tokens) for tokens in span_tokens] + [padding_floor])
        if self.max_positions is not None:
            self.check_room(following_tokens)
            slots = min(slots, self.max_positions - following_tokens - 1)
            span_tokens = [tokens[len(tokens) - slots:] if len(tokens) > slots else tokens for tokens in span_tokens]
        ids = torch.zeros(len(span_tokens), slots, dtype=torch.long, device=vectors.device)
        mask = torch.zeros(len(span_tokens), slots + 1, dtype=torch.bool, device=vectors.device)
        for m, tokens in enumerate(span_tokens):
            if tokens:  # right-aligned: the span's words end the prefix
                ids[m, slots - len(tokens):] = torch.tensor(tokens, device=vectors.device)
            mask[m, slots - len(tokens):] = True  # the span vector and its words
        embeds = self.language_model.get_input_embeddings()(ids) * mask[:, 1:].unsqueeze(-1).to(vectors.dtype)
        prefix = torch.cat([torch.zeros_like(vectors).unsqueeze(1), embeds], dim=1)
        vector_at = torch.tensor([slots - len(tokens) for tokens in span_tokens], device=vectors.device)
        rows = torch.arange(len(span_tokens), device=vectors.device)
        prefix = prefix.index_put((rows, vector_at), vectors)  # out of place: gradients reach the vectors
        return prefix, mask

    def label_loss(self, prefix: torch.Tensor, prefix_mask: torch.Tensor, label_ids: torch.Tensor,
                   label_mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced cross-entropy (summed) of writing each span's gold label after its prefix,
        as the reference trains the decoder: every label token is a target, padding included (the
        reference means to mask it but discards the masked copy), nothing is appended to the label."""
        import torch.nn.functional as F

        label_embeds = self.language_model.get_input_embeddings()(label_ids)
        inputs = torch.cat([prefix, label_embeds[:, :-1]], dim=1)
        attention = torch.cat([prefix_mask.to(label_mask.dtype), label_mask[:, :-1]], dim=1)
        logits = self.language_model(inputs_embeds=inputs, attention_mask=attention).logits
        ignored = torch.full(prefix.shape[:2], -100, dtype=label_ids.dtype, device=label_ids.device)
        targets = torch.cat([ignored, label_ids], dim=1)[:, 1:]
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="sum")

    @torch.inference_mode()
    def generate(self, prefixes: torch.Tensor, settings: GenerationSettings, eos_id: int, pad_id: int) -> torch.Tensor:
        """Generated token ids, (M * num_sequences, L): the sequences of span m are rows
        m * num_sequences ... (m + 1) * num_sequences - 1, best first; rows end with ``pad_id``."""
        from transformers import LogitsProcessorList

        model = self.language_model
        prefixes = prefixes.to(dtype=model.dtype)
        attention = torch.ones(prefixes.shape[:2], dtype=torch.long, device=prefixes.device)
        allowed = None
        if settings.constraints is not None:
            trie = settings.constraints

            def allowed(_row: int, generated: torch.Tensor) -> List[int]:
                return trie.next_tokens(generated.tolist()) or [eos_id]

        return model.generate(
            inputs_embeds=prefixes,
            attention_mask=attention,
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            do_sample=False,
            use_cache=True,
            num_beams=settings.num_sequences,
            num_return_sequences=settings.num_sequences,
            prefix_allowed_tokens_fn=allowed,
            logits_processor=LogitsProcessorList([NumericalGuard()]),
        )


def reference_prefix_length(
    selected_per_window: Sequence[int],
    spans_per_window: int,
    window_word_tokens: Sequence[Sequence[Sequence[int]]],
    prompt_token_counts: Sequence[int],
    max_width: int,
) -> int:
    """The reference's floor on the token slots of every prefix in a batch.

    gliner 0.2.29 packs each window's selected spans into a (windows, W*K) table whose unused
    cells hold span index -1; it reads that index as the span of words 0 ... max_width - 1 and
    counts the decoder tokens there, where word 0 is every token outside the text (the label
    prompt, padding to the batch's longest decoder input). Those counts join the real spans' when
    the prefix length is fixed, so a window with an unused cell pads every prefix to at least
    its prompt, its padding and its first ``max_width - 1`` words. ``prompt_token_counts``: the
    decoder tokens of each window's label prompt.
    """
    lengths = [prompt + sum(len(word) for word in words) for prompt, words in zip(prompt_token_counts, window_word_tokens)]
    longest = max(lengths, default=0)
    floor = 0
    for chosen, words, length, prompt in zip(selected_per_window, window_word_tokens, lengths, prompt_token_counts):
        if chosen < spans_per_window:
            outside_text = longest - length + prompt  # the prompt and the padding
            floor = max(floor, outside_text + sum(len(word) for word in words[: max_width - 1]))
    return floor


def token_span_decoder_tokens(
    start: int, end: int, words: Sequence[Sequence[int]], outside_before: Sequence[int], outside_after: Sequence[int]
) -> List[int]:
    """The decoder tokens the reference's token-level decoder model reads after the vector of the
    span of words ``start`` ... ``end`` (inclusive, 0-based).

    gliner 0.2.29 compares these 0-based positions with its decoder word mask, which numbers the
    text's words from 1 and gives 0 to every token outside the text, so the span reads the words
    ``start - 1`` ... ``end - 1`` and, when it starts at word 0, the tokens outside the text in
    input order: ``outside_before`` (the label prompt) before the words, ``outside_after`` (the
    padding to the batch's longest decoder input) after them. ``words``: each word's token ids.
    """
    inside = [token for word in words[max(start - 1, 0) : end] for token in word]
    if start == 0:
        return [*outside_before, *inside, *outside_after]
    return inside


def token_reference_prefix_length(
    spans_per_window: Sequence[Sequence[Tuple[int, int]]], kept_per_window: Sequence[int], read
) -> int:
    """The reference's floor on the token slots of every prefix in a token-level decoder batch.

    gliner 0.2.29 packs each window's kept spans into a (windows, N) table, N the most spans any
    window has; an unused cell holds span index -1, which reads the window's last table entry
    (its N-th span, or the padding span (0, 0) when it has fewer), and the tokens that span reads
    (``read(window, start, end)``) join the real spans' when the prefix length is fixed.
    """
    table_width = max([len(spans) for spans in spans_per_window] + [1])
    floor = 0
    for window, (spans, kept) in enumerate(zip(spans_per_window, kept_per_window)):
        if kept < table_width:
            start, end = spans[-1] if len(spans) == table_width else (0, 0)
            floor = max(floor, len(read(window, start, end)))
    return floor


def token_span_contexts(
    spans_per_window: Sequence[Sequence[Tuple[int, int]]],
    chosen: Sequence[Tuple[int, int]],
    window_words: Sequence[Sequence[Sequence[int]]],
    window_prompts: Sequence[Sequence[int]],
    pad_id: int,
) -> Tuple[List[List[int]], int]:
    """Token-level decoder models with full context: the decoder tokens each chosen span reads
    and the batch's prefix floor, as the reference builds them in inference and training alike.

    ``chosen``: (window, n) for the n-th span of ``spans_per_window[window]``, in the
    reference's order; ``window_words``: each window's decoder token ids per word;
    ``window_prompts``: each window's label-prompt tokens. Every window's decoder input is
    padded with ``pad_id`` to the batch's longest (the tokens a span at word 0 also reads)."""
    lengths = [len(prompt) + sum(map(len, words)) for prompt, words in zip(window_prompts, window_words)]
    padding = [[pad_id] * (max(lengths) - length) for length in lengths]

    def read(window, start, end):
        return token_span_decoder_tokens(start, end, window_words[window], window_prompts[window], padding[window])

    kept = [0] * len(spans_per_window)
    for window, _ in chosen:
        kept[window] += 1
    span_tokens = [read(window, *spans_per_window[window][n]) for window, n in chosen]
    return span_tokens, token_reference_prefix_length(spans_per_window, kept, read)


def decoder_word_tokens(tokenizer, words: Sequence[str]) -> List[List[int]]:
    """Decoder token ids of each word as the reference feeds them: every word after a space."""
    if not words:
        return []
    return tokenizer([" " + word for word in words], add_special_tokens=False, verbose=False)["input_ids"]


def decoder_prompt_tokens(tokenizer, label_texts: Sequence[str], ent_token: str, sep_token: str) -> List[int]:
    """Decoder token ids of the reference's label prompt (``<<ENT>> label ... <<SEP>>``, each a word)."""
    words = [part for label in label_texts for part in (ent_token, label)] + [sep_token]
    return [token for ids in decoder_word_tokens(tokenizer, words) for token in ids]


def check_constraint_list(labels, owner: str) -> List[str]:
    """``labels`` as a list, when it is a non-empty list of non-blank strings; raises
    :class:`LabelConstraintError` naming ``owner`` (the setting) otherwise."""
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)) or not labels:
        raise LabelConstraintError(
            f"{owner} must be a non-empty list of label strings, or null for free generation; got {labels!r}."
        )
    blank = [label for label in labels if not isinstance(label, str) or not label.strip()]
    if blank:
        raise LabelConstraintError(
            f"{owner} holds empty or whitespace-only entries {blank!r}; every entry must be a label text such "
            "as 'company'. Remove them."
        )
    return list(labels)


def check_positive(value, owner: str, unit: str = "integer") -> int:
    """``value`` when it is an integer >= 1 (not a bool); a ValueError naming ``owner`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner} must be a positive {unit}, got {value!r}.")
    return value


def constraint_trie(tokenizer, labels: Sequence[str], vocab_size: int) -> LabelTrie:
    """The trie of allowed labels, each tokenised as the reference does (its leading BOS dropped,
    the end-of-sequence id appended); raises :class:`LabelConstraintError` for unusable lists."""
    labels = check_constraint_list(labels, "gen_constraints")
    eos = tokenizer.eos_token_id
    if eos is None or not 0 <= eos < vocab_size:
        raise LabelConstraintError(
            f"the decoder tokenizer's end-of-sequence id {eos!r} is outside the decoder's vocabulary "
            f"({vocab_size} tokens), so constrained labels could never end; fix the decoder tokenizer."
        )
    sequences = []
    for label in labels:
        ids = list(tokenizer.encode(label))
        if ids and ids[0] == tokenizer.bos_token_id:
            ids = ids[1:]
        if not ids:
            raise LabelConstraintError(
                f"gen_constraints entry {label!r} tokenises to nothing with the decoder tokenizer (none of its "
                "characters is in the tokenizer's vocabulary), so the decoder could never write it; remove it "
                "or spell it with characters the decoder tokenizer reads."
            )
        written = tokenizer.decode(ids, skip_special_tokens=True)
        if "".join(written.split()) != "".join(label.split()):  # a tokenizer may drop unknown characters
            raise LabelConstraintError(
                f"gen_constraints entry {label!r} reads as {written.strip()!r} with the decoder tokenizer (characters "
                "outside its vocabulary vanish), so the decoder could never write it; use "
                f"{written.strip()!r} or another spelling the decoder tokenizer reads in full."
            )
        sequences.append(ids + [eos])
    return LabelTrie(sequences)
