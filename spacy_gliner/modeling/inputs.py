"""From words to subword ids: word pieces, label prompts and padded batches.

Each word is tokenized once per document and label prompts once per label set, then batches are
assembled from the cached ids. This yields the same ids as tokenizing the whole
``prompt + words`` sequence with ``is_split_into_words=True``, which the reference does per call.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .config import GlinerConfig
from .model import EncodedBatch

# A word longer than this many subwords keeps only its first ones: its vector is read from its
# first subword anyway ("first" pooling), and one runaway token (a URL, a base64 blob) must not
# take a whole encoder window.
MAX_PIECES_PER_WORD = 32


def sequence_limit(tokenizer, encoder_config) -> int:
    """Subwords an encoder takes at once: the tokenizer's limit, unless unset (some tokenizers say
    10^30) or beyond the encoder's position table."""
    limit = tokenizer.model_max_length or 512
    positions = (encoder_config or {}).get("max_position_embeddings")
    if positions and (limit > 100_000 or limit > positions):
        limit = positions
    return int(min(limit, 100_000))


def special_ids_around_text(tokenizer) -> Tuple[List[int], List[int]]:
    """The ids a tokenizer puts before and after a sequence ([CLS] ... [SEP], <s> ... </s>).

    Read from a real encoding rather than ``build_inputs_with_special_tokens``, which tokenizers
    defined only by a ``tokenizer.json`` post-processor (ModernBERT's) do not implement.
    """
    plain = tokenizer(["a"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    full = tokenizer(["a"], is_split_into_words=True, add_special_tokens=True)["input_ids"]
    for at in range(len(full) - len(plain) + 1):
        if full[at : at + len(plain)] == plain:
            return full[:at], full[at + len(plain):]
    raise ValueError(f"cannot tell where {type(tokenizer).__name__} puts its special tokens")


class InputBuilder:
    def __init__(self, tokenizer, config: GlinerConfig, label_tokenizer=None):
        self.tokenizer = tokenizer
        self.label_tokenizer = label_tokenizer
        self.config = config
        self.prefix_ids, self.suffix_ids = special_ids_around_text(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.unk_id = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else self.pad_id
        self._prompt_cache: Dict[Tuple[str, ...], List[int]] = {}

    @property
    def max_tokens(self) -> int:
        """Subwords the text encoder takes in one sequence, special tokens included."""
        return sequence_limit(self.tokenizer, self.config.encoder_config)

    @property
    def special_count(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)

    def word_pieces(self, words: Sequence[str], cap: Optional[int] = MAX_PIECES_PER_WORD) -> List[List[int]]:
        """Subword ids of each word; a word the tokenizer drops entirely becomes one unknown token.

        Label prompts are read uncapped (``cap=None``): a label must never be cut short.
        """
        if not words:
            return []
        encoded = self.tokenizer(list(words), is_split_into_words=True, add_special_tokens=False, verbose=False)
        pieces: List[List[int]] = [[] for _ in words]
        for token_id, word_id in zip(encoded["input_ids"], encoded.word_ids()):
            if word_id is not None:
                pieces[word_id].append(token_id)
        return [p[:cap] if p else [self.unk_id] for p in pieces]

    def prompt_ids(self, label_texts: Sequence[str]) -> List[int]:
        """``<<ENT>> label1 <<ENT>> label2 ... <<SEP>>`` as ids, cached per label tuple."""
        return self._cached_prompt_ids(tuple(label_texts), lambda: self._entity_prompt_words(label_texts))

    def relex_prompt_ids(self, entity_texts: Sequence[str], relation_texts: Sequence[str]) -> List[int]:
        """Relex prompt ``<<ENT>> e1 ... <<SEP>> <<REL>> r1 <<REL>> r2 ... <<SEP>>`` as ids.

        As in the reference, an empty entity label keeps only its marker, relation labels are
        always written, and the second separator is there even with no relation labels.
        """

        def prompt_words() -> List[str]:
            words = self._entity_prompt_words(entity_texts)
            for text in relation_texts:
                words.extend((self.config.rel_token, text))
            words.append(self.config.sep_token)
            return words

        key = ("\x00relex",) + tuple(entity_texts) + ("\x00",) + tuple(relation_texts)
        return self._cached_prompt_ids(key, prompt_words)

    def _entity_prompt_words(self, label_texts: Sequence[str]) -> List[str]:
        """``<<ENT>> label1 <<ENT>> label2 ... <<SEP>>`` as words; an empty label keeps only its marker."""
        words: List[str] = []
        for text in label_texts:
            words.append(self.config.ent_token)
            if text:
                words.append(text)
        words.append(self.config.sep_token)
        return words

    def _cached_prompt_ids(self, key: Tuple[str, ...], prompt_words: Callable[[], List[str]]) -> List[int]:
        cached = self._prompt_cache.get(key)
        if cached is None:
            cached = [i for piece in self.word_pieces(prompt_words(), cap=None) for i in piece]
            if len(self._prompt_cache) > 64:
                self._prompt_cache.clear()
            self._prompt_cache[key] = cached
        return cached

    def label_prompt_length(self, text: str) -> int:
        """Subwords one label adds to a uni-encoder prompt (its marker included)."""
        return 1 + (sum(len(p) for p in self.word_pieces([text], cap=None)) if text else 0)

    def build(
        self,
        windows: Sequence[Sequence[List[int]]],
        prompt: Optional[List[int]] = None,
        prompts: Optional[Sequence[List[int]]] = None,
    ) -> EncodedBatch:
        """Pad a batch of windows (each a list of per-word piece lists) into model inputs.

        ``prompt`` is shared by every row; ``prompts`` gives each row its own (training, where
        every example has its own sampled labels).
        """
        if prompts is None:
            prompts = [prompt or []] * len(windows)
        pooling = self.config.subtoken_pooling
        rows_ids, rows_words = [], []
        for window, row_prompt in zip(windows, prompts):
            ids = list(self.prefix_ids) + list(row_prompt)
            marks = [0] * len(ids)
            for index, pieces in enumerate(window, start=1):
                ids.extend(pieces)
                if pooling == "first":
                    marks.extend([index] + [0] * (len(pieces) - 1))
                elif pooling == "last":
                    marks.extend([0] * (len(pieces) - 1) + [index])
                else:
                    marks.extend([index] * len(pieces))
            ids.extend(self.suffix_ids)
            marks.extend([0] * len(self.suffix_ids))
            rows_ids.append(ids)
            rows_words.append(marks)
        width = max(len(r) for r in rows_ids)
        input_ids = torch.full((len(rows_ids), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows_ids), width), dtype=torch.long)
        words_mask = torch.zeros((len(rows_ids), width), dtype=torch.long)
        for row, (ids, marks) in enumerate(zip(rows_ids, rows_words)):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            words_mask[row, : len(marks)] = torch.tensor(marks)
        num_words = torch.tensor([len(w) for w in windows], dtype=torch.long)
        return EncodedBatch(input_ids, attention, words_mask, num_words)

    def tokenize_labels(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Bi-encoder label tower inputs."""
        encoded = self.label_tokenizer(list(texts), padding="longest", truncation=True, return_tensors="pt")
        return encoded["input_ids"], encoded["attention_mask"]

    def label_token_length(self, text: str) -> int:
        return self.label_token_lengths([text])[0]

    def label_token_lengths(self, texts: Sequence[str], chunk_size: int = 8192) -> List[int]:
        """Subwords per label text for the label encoder, tokenized in batches (one call per text
        costs a third of a millisecond: minutes for a million labels)."""
        out: List[int] = []
        for begin in range(0, len(texts), chunk_size):
            encoded = self.label_tokenizer(list(texts[begin : begin + chunk_size]), add_special_tokens=True)
            out.extend(len(ids) for ids in encoded["input_ids"])
        return out

    @property
    def label_max_tokens(self) -> int:
        return sequence_limit(self.label_tokenizer, self.config.labels_encoder_config)
