"""A new GLiNER on a pretrained Hugging Face encoder: pretrained encoder weights, random heads.

The starting point for training from a base encoder, and for demos on machines without the hub.
"""
from __future__ import annotations

from typing import Optional

import torch

from .checkpoint import GlinerCheckpoint
from .config import GlinerConfig
from .model import GlinerModel

PROMPT_TOKENS = ("[FLERT]", "<<ENT>>", "<<SEP>>")
REL_TOKEN = "<<REL>>"


def new_checkpoint(
    encoder: str,
    *,
    label_encoder: Optional[str] = None,
    span_mode: str = "markerV0",
    hidden_size: int = 512,
    max_width: int = 12,
    max_len: int = 384,
    num_rnn_layers: int = 1,
    dropout: float = 0.4,
    seed: int = 0,
    relations_layer: Optional[str] = None,
    decoder: Optional[str] = None,
    decoder_loss_coef: float = 0.5,
    blank_entity_prob: float = 0.1,
) -> GlinerCheckpoint:
    """``encoder`` (and ``label_encoder`` for a bi-encoder) are local directories or cached hub ids.

    ``relations_layer`` (e.g. ``"mlp"``, ``"dot"``, ``"none"``) makes a relex model (uni-encoder
    span models only): ``<<REL>>`` is added after the entity tokens, as the reference does.
    ``decoder`` (a causal language model, e.g. GPT-2) makes a span model with a generative label
    decoder (UniEncoderSpanDecoder, ``decoder_mode`` span) starting from its pretrained weights.
    """
    relex = relations_layer is not None
    if relex and (label_encoder is not None or span_mode == "token_level"):
        raise ValueError("a new relex GLiNER must be a uni-encoder span model (no label_encoder, span_mode not token_level)")
    if decoder is not None and (label_encoder is not None or span_mode == "token_level" or relex):
        raise ValueError(
            "a new GLiNER with a label decoder must be a uni-encoder span model (no label_encoder, no "
            "relations_layer, span_mode not token_level): the reference builds the decoder on uni-encoder models only, "
            "and new token-level decoder models are not built here (token-level decoder checkpoints load and "
            "fine-tune with 'model')"
        )
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    bi_encoder = label_encoder is not None
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    text_model = AutoModel.from_pretrained(encoder)
    if not bi_encoder:
        # Same order as the reference, so <<ENT>> is the second-to-last id.
        tokenizer.add_tokens(list(PROMPT_TOKENS) + ([REL_TOKEN] if relex else []), special_tokens=True)
        text_model.resize_token_embeddings(len(tokenizer))
    label_tokenizer = label_model = None
    if bi_encoder:
        label_tokenizer = AutoTokenizer.from_pretrained(label_encoder)
        label_model = AutoModel.from_pretrained(label_encoder)
    family = "token" if span_mode == "token_level" else "span"
    raw = {
        "model_type": f"gliner_{'bi' if bi_encoder else 'uni'}_encoder_{family}" + ("_relex" if relex else ""),
        "model_name": encoder,
        "labels_encoder": label_encoder,
        "span_mode": span_mode,
        "hidden_size": hidden_size,
        "max_width": max_width,
        "max_len": max_len,
        "num_rnn_layers": num_rnn_layers,
        "dropout": dropout,
        "subtoken_pooling": "first",
        "embed_ent_token": True,
        "class_token_index": -1 if bi_encoder else tokenizer.convert_tokens_to_ids(PROMPT_TOKENS[1]),
        "ent_token": PROMPT_TOKENS[1],
        "sep_token": PROMPT_TOKENS[2],
        "words_splitter_type": "whitespace",
        "fine_tune": True,
        "vocab_size": len(tokenizer) if not bi_encoder else -1,
        "encoder_config": text_model.config.to_dict(),
        "labels_encoder_config": label_model.config.to_dict() if bi_encoder else None,
    }
    if relex:
        raw.update(relations_layer=relations_layer, rel_token=REL_TOKEN,
                   rel_token_index=tokenizer.convert_tokens_to_ids(REL_TOKEN), embed_rel_token=True)
    decoder_tokenizer = language_model = None
    if decoder is not None:
        from transformers import AutoModelForCausalLM

        language_model = AutoModelForCausalLM.from_pretrained(decoder)
        decoder_tokenizer = AutoTokenizer.from_pretrained(decoder, add_prefix_space=True)
        if decoder_tokenizer.pad_token is None:
            decoder_tokenizer.pad_token = decoder_tokenizer.eos_token
        raw.update(
            model_type="gliner_uni_encoder_span_decoder", labels_decoder=decoder,
            labels_decoder_config=language_model.config.to_dict(), decoder_mode="span", full_decoder_context=True,
            decoder_loss_coef=decoder_loss_coef, span_loss_coef=1.0, blank_entity_prob=blank_entity_prob,
        )
    config = GlinerConfig.from_dict(raw, source=f"new GLiNER on {encoder}")
    model = GlinerModel(config, text_model, label_model)
    if language_model is not None:
        model.label_decoder.language_model.load_state_dict(language_model.state_dict())
    model.eval()
    return GlinerCheckpoint(config, model, tokenizer, label_tokenizer, decoder_tokenizer)
