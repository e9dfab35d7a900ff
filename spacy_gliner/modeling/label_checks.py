"""Checks on label texts against a checkpoint's tokenizers and prompt, before any model runs.

Beside the prompt code (:mod:`.inputs`): whether a label fits in the encoder window and holds no
token the prompt reserves. Used when a component is added, when labels are added, and when a
model loads, so a bad label fails early with its text named.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Sequence

from .inputs import MAX_PIECES_PER_WORD, InputBuilder


def prompt_budget(inputs: InputBuilder) -> int:
    """Subwords a uni-encoder label prompt may use; the rest of the window is for text."""
    text_budget = inputs.max_tokens - inputs.special_count
    return text_budget - max(MAX_PIECES_PER_WORD, text_budget // 2)


def reserved_tokens(inputs: InputBuilder) -> Dict[str, str]:
    """Token -> what it is, for every token a label must not contain.

    Uni-encoders read labels inside the text tokenizer's prompt, where a prompt token would open
    a new label column (shifting every label after it) or end the prompt early, and the
    tokenizer's own special tokens ([CLS], [SEP], ...) mark sequence boundaries. Bi-encoders read
    labels with the label tokenizer alone: its special tokens are parsed as boundaries, not as
    the characters the user wrote, so the label tower reads another label than the one named.
    """
    config = inputs.config
    reserved: Dict[str, str] = {}
    if config.bi_encoder and inputs.label_tokenizer is not None:
        for token in inputs.label_tokenizer.all_special_tokens:
            reserved.setdefault(token, "a special token of the label tokenizer")
        return reserved
    for token in ("[FLERT]", config.ent_token, config.sep_token, config.rel_token):
        if token:
            reserved.setdefault(token, "a GLiNER prompt token")
    for token in inputs.tokenizer.all_special_tokens:
        reserved.setdefault(token, "a special token of the tokenizer")
    return reserved


def check_label_tokens(inputs: InputBuilder, label_texts: Sequence[str]) -> None:
    """Raise if a label holds a reserved token (see :func:`reserved_tokens`); warn about labels
    whose subword ids are identical (``Person`` / ``person`` on an uncased encoder), which the
    model therefore scores identically."""
    reserved = reserved_tokens(inputs)
    for text in label_texts:
        for token, what in reserved.items():
            if token in text:
                raise ValueError(
                    f"label {text[:80]!r} contains {token!r}, {what} of this checkpoint; the model would not "
                    "read the label as written. Remove or rephrase it."
                )
    if len(label_texts) < 2:
        return
    tokenizer = inputs.label_tokenizer if inputs.config.bi_encoder and inputs.label_tokenizer is not None else inputs.tokenizer
    ids = tokenizer(list(label_texts), add_special_tokens=False, verbose=False)["input_ids"]
    same: Dict[tuple, List[str]] = {}
    for text, label_ids in zip(label_texts, ids):
        same.setdefault(tuple(label_ids), []).append(text)
    clashes = [texts for texts in same.values() if len(texts) > 1]
    if clashes:
        listed = "; ".join(" / ".join(repr(t) for t in texts) for texts in clashes[:10])
        warnings.warn(
            f"labels the tokenizer cannot tell apart (same subword ids, so the same scores): {listed}. "
            "Keep one of each.",
            stacklevel=3,
        )


def check_label_lengths(inputs: InputBuilder, label_texts: Sequence[str]) -> None:
    """Raise if a label cannot be read whole by the model (too long, or holding a special
    token); warn about labels the tokenizer cannot tell apart."""
    check_label_tokens(inputs, label_texts)
    if inputs.config.bi_encoder:
        limit = inputs.label_max_tokens
        lengths = inputs.label_token_lengths(label_texts)
    else:
        limit = prompt_budget(inputs)
        lengths = [inputs.label_prompt_length(text) + 1 for text in label_texts]
    for text, length in zip(label_texts, lengths):
        if length > limit:
            raise ValueError(
                f"label {text[:80]!r} takes {length} subwords but at most {limit} fit in the encoder "
                "window; shorten the label or its description."
            )


def relex_prompt_too_long(n_entities: int, n_relations: int, length: int, limit: int) -> str:
    return (
        f"gliner_relex: the {n_entities} entity and {n_relations} relation labels take {length} subwords "
        f"together, but at most {limit} fit in the encoder window beside the text. A relex prompt cannot be "
        "split into groups (relations are scored between entities of all labels in one pass); use fewer or "
        "shorter labels or descriptions."
    )
