"""Transformer encoders for text and labels, and the pooling from subwords to words."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn


def build_transformer(encoder_config: Dict[str, Any]) -> nn.Module:
    """Instantiate an encoder-only Hugging Face model from its config dict, weights random.

    Weights come later from the GLiNER checkpoint, so nothing is downloaded here.
    """
    from transformers import AutoConfig, AutoModel, T5EncoderModel

    values = dict(encoder_config)
    model_type = values.pop("model_type", None)
    if not model_type:
        raise ValueError("encoder config has no 'model_type'; cannot tell which transformer to build.")
    config = AutoConfig.for_model(model_type, **values)
    if model_type in ("t5", "mt5"):
        return T5EncoderModel(config)
    return AutoModel.from_config(config)


def encoder_config_from_pretrained(name_or_path: str, vocab_size: int = -1) -> Dict[str, Any]:
    """Config dict of a pretrained encoder (a local directory, or a hub id already cached)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name_or_path)
    if vocab_size != -1:
        config.vocab_size = vocab_size
    return config.to_dict()


class TextEncoder(nn.Module):
    """Transformer over the subword sequence, projected to the GLiNER hidden size if needed."""

    def __init__(self, transformer: nn.Module, hidden_size: int):
        super().__init__()
        self.transformer = transformer
        encoder_size = transformer.config.hidden_size
        if encoder_size != hidden_size:
            self.projection = nn.Linear(encoder_size, hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.transformer is None:
            raise RuntimeError(
                "this model's text tower was dropped: a shared spaCy transformer computes its word vectors "
                "(GlinerModel.represent_word_vectors); run it through its pipeline."
            )
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)[0]
        if hasattr(self, "projection"):
            hidden = self.projection(hidden)
        return hidden


class LabelEncoder(TextEncoder):
    """Bi-encoder label tower: one vector per label text, mean-pooled over its subwords."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = super().forward(input_ids, attention_mask)
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def pool_words(
    token_embeddings: torch.Tensor,
    words_mask: torch.Tensor,
    num_words: torch.Tensor,
    pooling: str,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Word vectors from subword vectors.

    ``words_mask[b, t]`` holds the 1-based index of the word subword ``t`` belongs to (0 for
    prompt, special and padding positions). "first"/"last" read the marked subword; "mean"/"max"
    reduce over every subword of the word.
    Returns ``(words, word_mask)`` of shapes (B, W, D) and (B, W).
    """
    batch_size, _, dim = token_embeddings.shape
    max_words = int(num_words.max()) if num_words.numel() else 0
    b_idx, t_idx = torch.nonzero(words_mask > 0, as_tuple=True)
    w_idx = words_mask[b_idx, t_idx] - 1
    selected = token_embeddings[b_idx, t_idx]
    if pooling in ("first", "last"):
        words = token_embeddings.new_zeros((batch_size, max_words, dim))
        words[b_idx, w_idx] = selected
    else:
        flat = token_embeddings.new_zeros((batch_size * max_words, dim))
        index = (b_idx * max_words + w_idx).unsqueeze(-1).expand(-1, dim)
        flat.scatter_reduce_(0, index, selected, reduce="mean" if pooling == "mean" else "amax", include_self=False)
        words = flat.view(batch_size, max_words, dim)
    positions = torch.arange(max_words, device=token_embeddings.device)
    word_mask = positions.unsqueeze(0) < num_words.view(-1, 1)
    return words, word_mask


def gather_prompt_vectors(
    token_embeddings: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    marker_id: int,
    use_marker: bool,
    count: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Vectors at the prompt marker tokens (``<<ENT>>`` or ``<<REL>>``), in prompt order.

    With ``use_marker=False`` the vector of the token right after each marker is taken.
    Returns (B, C, D) vectors and a (B, C) mask.
    """
    is_marker = input_ids.eq(marker_id) & attention_mask.gt(0)
    per_row = is_marker.sum(dim=1)
    width = int(per_row.max()) if count is None else count
    b_idx, t_idx = torch.nonzero(is_marker, as_tuple=True)
    if not use_marker:
        t_idx = t_idx + 1
    # Rank of each marker within its row = its class index.
    starts = torch.cumsum(per_row, 0) - per_row
    c_idx = torch.arange(b_idx.numel(), device=input_ids.device) - starts[b_idx]
    if count is not None:
        # The prompt comes before the text, so its markers are the first ``count`` of a row; any
        # later one is the marker's text written in the document itself (e.g. "<<REL>>"), which
        # the tokenizer maps to the same id. It is text, not a class.
        keep = c_idx < width
        b_idx, t_idx, c_idx = b_idx[keep], t_idx[keep], c_idx[keep]
        per_row = per_row.clamp(max=width)
    vectors = token_embeddings.new_zeros((input_ids.size(0), width, token_embeddings.size(-1)))
    vectors[b_idx, c_idx] = token_embeddings[b_idx, t_idx]
    mask = torch.arange(width, device=input_ids.device).unsqueeze(0) < per_row.unsqueeze(1)
    return vectors, mask
