"""Tiny random-weight replicas of the hub encoders that GLiNER checkpoints are built on.

The model hub cannot be reached from the test machines, yet the plugin has to load every
published GLiNER family, and each family names a different base encoder whose hub repo
stores its tokenizer differently: DeBERTa-v3 ships only a SentencePiece ``spm.model`` (no
``tokenizer.json``; the fast tokenizer is converted on load), XLM-R ships both the
SentencePiece model and a ``tokenizer.json``, ModernBERT ships only a ``tokenizer.json``,
mT5 ships ``spiece.model`` and an encoder-decoder checkpoint, GPT-2 ships byte-level BPE
files. Those differences are exactly where loaders break, so each builder here writes the
same file names as the real repo (and leaves out the files it lacks), with a tokenizer that
is really trained on real text (so real sentences tokenize into real pieces, not [UNK]) and
an architecture shrunk to a few hundred thousand parameters.

Everything is seeded: building the same kind twice gives byte-identical files.

Loading the SentencePiece-only kinds (deberta-v3, mdeberta-v3, mt5) with
``AutoTokenizer.from_pretrained`` needs the ``protobuf`` package, because transformers
converts the slow tokenizer to a fast one; building xlm-roberta's ``tokenizer.json`` goes
through the same converter.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEED = 0
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# The repo each kind imitates (for messages and docs; nothing is downloaded).
HUB_REPOS = {
    "deberta-v3": "microsoft/deberta-v3-base",
    "mdeberta-v3": "microsoft/mdeberta-v3-base",
    "xlm-roberta": "FacebookAI/xlm-roberta-base",
    "modernbert": "answerdotai/ModernBERT-base",
    "mt5": "google/mt5-small",
    "gpt2": "openai-community/gpt2",
}

# Exactly the files each build writes: the real repo's files minus the other frameworks'
# weights (tf/flax/onnx), READMEs and generation configs. Tests compare against this set, so a
# loader that silently depends on a file the real repo lacks (say deberta's tokenizer.json) fails
# here first.
HUB_FILES = {
    "deberta-v3": {"config.json", "spm.model", "tokenizer_config.json", "pytorch_model.bin"},
    "mdeberta-v3": {"config.json", "spm.model", "tokenizer_config.json", "pytorch_model.bin"},
    "xlm-roberta": {"config.json", "sentencepiece.bpe.model", "tokenizer.json",
                    "pytorch_model.bin", "model.safetensors"},
    "modernbert": {"config.json", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "model.safetensors"},
    "mt5": {"config.json", "spiece.model", "tokenizer_config.json", "special_tokens_map.json",
            "pytorch_model.bin"},
    "gpt2": {"config.json", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
             "model.safetensors"},
}
KINDS = tuple(HUB_REPOS)

# Kinds whose real tokenizer is multilingual: their default training text mixes in sentences
# full of accented names, and their SentencePiece keeps every character seen.
MULTILINGUAL = {"mdeberta-v3", "xlm-roberta", "mt5"}

# How many sentences a tokenizer is trained on by default: enough for a 4000-piece unigram
# vocabulary, small enough that all six builds take seconds on two cores.
TRAINING_SENTENCES = 3000


# --------------------------------------------------------------------------- shared text

def _conll_sentences(path: Path) -> list[str]:
    """Sentences of a CoNLL-2003 file (token first on each line, blank line between)."""
    sentences, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if not fields:
            if words:
                sentences.append(" ".join(words))
            words = []
        elif fields[0] != "-DOCSTART-":
            words.append(fields[0])
    if words:
        sentences.append(" ".join(words))
    return sentences


def _gner_sentences(path: Path) -> list[str]:
    """Sentences of a GNER bundle file (``token<TAB>tag`` lines, blank line between)."""
    sentences, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        token = line.split("\t")[0].strip()
        if not token:
            if words:
                sentences.append(" ".join(words))
            words = []
        else:
            words.append(token)
    if words:
        sentences.append(" ".join(words))
    return sentences


def _crossner_sentences() -> list[str]:
    sentences = []
    for folder in sorted((DATA / "gliner_ner_datasets").glob("CrossNER_*")):
        for split in ("train.json", "dev.json"):
            if (folder / split).exists():
                rows = json.loads((folder / split).read_text(encoding="utf-8"))
                sentences.extend(row["sentence"] for row in rows)
    return sentences


@lru_cache(maxsize=None)
def _sources() -> tuple[tuple[str, ...], ...]:
    """The English-ish corpora, each as a tuple of sentences (read once per process)."""
    if not DATA.is_dir():
        raise FileNotFoundError(f"shared corpora not found at {DATA}")
    bundle = DATA / "gner_ner_bundle"
    found = [
        _crossner_sentences(),
        _conll_sentences(DATA / "conll2003" / "train.txt"),
        _gner_sentences(bundle / "WikiANN-en" / "train.txt"),
        _gner_sentences(bundle / "MultiNERD" / "dev.txt"),
    ]
    return tuple(tuple(s for s in source if s.strip()) for source in found if source)


def _round_robin(sources: Iterable[Iterable[str]], limit: int) -> list[str]:
    """Take sentences from each source in turn, skipping repeats, so even a small limit mixes
    domains (science prose, news, wikipedia titles) instead of draining the first corpus."""
    iterators = [iter(source) for source in sources]
    seen, out = set(), []
    while iterators and len(out) < limit:
        for iterator in list(iterators):
            sentence = next(iterator, None)
            if sentence is None:
                iterators.remove(iterator)
            elif sentence not in seen:
                seen.add(sentence)
                out.append(sentence)
                if len(out) == limit:
                    break
    return out


def shared_text(limit: int) -> list[str]:
    """Up to ``limit`` real sentences from the shared corpora (CrossNER, CoNLL-2003, WikiANN,
    MultiNERD), in a fixed order."""
    return _round_robin(_sources(), limit)


_NON_ASCII_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def _has_accents(sentence: str) -> bool:
    return any(ord(ch) > 127 and _NON_ASCII_LETTER.match(ch) for ch in sentence)


def accented_text(limit: int) -> list[str]:
    """Up to ``limit`` real sentences holding non-ASCII letters (Río, Międzyrzecz, Trần, Göring...).

    The shared corpora are English; their Wikipedia-derived sets are the nearest thing to
    multilingual text there is, so the multilingual kinds learn pieces for these letters."""
    bundle = DATA / "gner_ner_bundle"
    sources = []
    for name, split in (("WikiANN-en", "train.txt"), ("MultiNERD", "dev.txt"),
                        ("WikiNeural", "dev.txt")):
        if (bundle / name / split).exists():
            sources.append([s for s in _gner_sentences(bundle / name / split) if _has_accents(s)])
    return _round_robin(sources, limit)


def default_text(kind: str) -> list[str]:
    """The training text a kind gets when the caller gives none."""
    if kind in MULTILINGUAL:
        third = TRAINING_SENTENCES // 3
        return shared_text(TRAINING_SENTENCES - third) + accented_text(third)
    return shared_text(TRAINING_SENTENCES)


# --------------------------------------------------------------------------- helpers

def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _train_sentencepiece(text: list[str], vocab_size: int, character_coverage: float,
                         **special_pieces) -> bytes:
    """Train a unigram SentencePiece model in memory; returns the serialized model.

    One thread, no input sampling or shuffling and a fixed generator seed: the same text gives
    the same model bytes. ``hard_vocab_limit`` stays on, so a too-small text fails loudly
    instead of quietly yielding a smaller vocabulary than the config assumes."""
    import sentencepiece as spm

    if hasattr(spm, "set_random_generator_seed"):
        spm.set_random_generator_seed(SEED)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_writer=buffer,
        model_type="unigram",
        vocab_size=vocab_size,
        character_coverage=character_coverage,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=2,
        **special_pieces,
    )
    return buffer.getvalue()


def _save_weights(model, directory: Path, safetensors: bool = False, bin: bool = False) -> None:
    """Write only the weight file(s): save_pretrained also writes its own config.json (with
    keys the hub file lacks) and, for generative models, generation_config.json, so it saves
    into a scratch folder and just the weights are moved over. save_pretrained (rather than a
    bare torch.save) keeps the hub's handling of tied weights."""
    with tempfile.TemporaryDirectory() as scratch:
        for wanted, safe, name in ((safetensors, True, "model.safetensors"),
                                   (bin, False, "pytorch_model.bin")):
            if wanted:
                model.save_pretrained(scratch, safe_serialization=safe)
                shutil.move(os.path.join(scratch, name), directory / name)


def _random_model(model_class, directory: Path):
    """Random weights for the config just written, seeded. Built from the config as
    AutoConfig reads it back, so the weights match what loaders will see."""
    import torch
    from transformers import AutoConfig

    torch.manual_seed(SEED)
    config = AutoConfig.from_pretrained(directory)
    model = model_class(config)
    model.eval()
    return model


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


# --------------------------------------------------------------------------- builders

def _deberta_v3(directory: Path, text: list[str], spm_vocab: int, coverage: float) -> None:
    """microsoft/deberta-v3-base and microsoft/mdeberta-v3-base: spm.model + a two-key
    tokenizer_config.json + pytorch_model.bin, no tokenizer.json."""
    from transformers import DebertaV2ForMaskedLM

    # DeBERTa-v3's SentencePiece model puts [PAD] [CLS] [SEP] [UNK] at ids 0-3; [MASK] is not
    # a piece: the tokenizer appends it as an added token right after the spm vocabulary.
    model_bytes = _train_sentencepiece(
        text, spm_vocab, coverage,
        pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]",
        eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]")
    (directory / "spm.model").write_bytes(model_bytes)
    # The hub file holds just these two keys; every special token comes from the tokenizer
    # class defaults ([CLS] [SEP] [UNK] [PAD] [MASK]) and split_by_punct defaults to false.
    _write_json(directory / "tokenizer_config.json", {"do_lower_case": False, "vocab_type": "spm"})
    # The hub config: no "architectures", pos_att_type as the "p2c|c2p" string the hub uses
    # (transformers splits it into ["p2c", "c2p"]), and an embedding table larger than the
    # tokenizer (real: 128100 rows for 128001 tokens; here 100 spare rows as well).
    _write_json(directory / "config.json", {
        "model_type": "deberta-v2",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 512,
        "relative_attention": True,
        "position_buckets": 256,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "pos_att_type": "p2c|c2p",
        "layer_norm_eps": 1e-7,
        "max_relative_positions": -1,
        "position_biased_input": False,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "type_vocab_size": 0,
        "vocab_size": spm_vocab + 100,
    })
    # The hub checkpoint is a pretraining checkpoint: "deberta."-prefixed encoder weights plus
    # head weights that AutoModel drops.
    _save_weights(_random_model(DebertaV2ForMaskedLM, directory), directory, bin=True)


def _build_deberta_v3(directory: Path, text: list[str]) -> None:
    _deberta_v3(directory, text, spm_vocab=4000, coverage=0.9995)


def _build_mdeberta_v3(directory: Path, text: list[str]) -> None:
    # Its own (smaller, accent-aware) vocabulary, so a test that mixes up the two DeBERTa
    # tokenizers sees different ids.
    _deberta_v3(directory, text, spm_vocab=3000, coverage=1.0)


def _build_xlm_roberta(directory: Path, text: list[str]) -> None:
    """FacebookAI/xlm-roberta-base: sentencepiece.bpe.model + tokenizer.json, both weight
    formats, and no tokenizer_config.json / special_tokens_map.json (the hub repo has none)."""
    from transformers import XLMRobertaForMaskedLM, XLMRobertaTokenizerFast

    spm_vocab = 3000
    # Despite the file name the model is a unigram one, with SentencePiece's default
    # <unk>=0 <s>=1 </s>=2; the tokenizer remaps to fairseq ids <s>=0 <pad>=1 </s>=2 <unk>=3,
    # shifting the other pieces up by one, and appends <mask>.
    model_bytes = _train_sentencepiece(text, spm_vocab, 1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    spm_path = directory / "sentencepiece.bpe.model"
    spm_path.write_bytes(model_bytes)
    fast = XLMRobertaTokenizerFast(vocab_file=str(spm_path))  # converts spm -> tokenizers
    fast.backend_tokenizer.save(str(directory / "tokenizer.json"))
    _write_json(directory / "config.json", {
        "architectures": ["XLMRobertaForMaskedLM"],
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 514,
        "model_type": "xlm-roberta",
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "output_past": True,
        "pad_token_id": 1,
        "type_vocab_size": 1,
        # real: 250002 = 250000 pieces + 1 (fairseq shift) + <mask>; equal to len(tokenizer)
        "vocab_size": len(fast),
    })
    _save_weights(_random_model(XLMRobertaForMaskedLM, directory), directory,
                  safetensors=True, bin=True)


def _byte_level_bpe(text: list[str], vocab_size: int):
    """A GPT-2 style byte-level BPE (no special tokens yet) trained on ``text``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(text, trainer=trainer)
    return tokenizer


def _build_modernbert(directory: Path, text: list[str]) -> None:
    """answerdotai/ModernBERT-base: tokenizer.json + tokenizer_config.json +
    special_tokens_map.json (a PreTrainedTokenizerFast, no vocab/merges files) and
    model.safetensors."""
    from tokenizers import AddedToken, processors
    from transformers import ModernBertForMaskedLM, PreTrainedTokenizerFast

    tokenizer = _byte_level_bpe(text, 3000)
    # As in the real tokenizer the BERT-style specials come after the BPE vocabulary
    # (there [UNK]=50280 ... [MASK]=50284), [MASK] strips the space before it, and unused
    # tokens pad the vocabulary to the embedding size (a multiple of 64).
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tokenizer.add_special_tokens([AddedToken(t, lstrip=(t == "[MASK]"), normalized=False)
                                  for t in specials])
    vocab_size = _round_up(tokenizer.get_vocab_size(), 64)
    unused = [f"[unused{i}]" for i in range(vocab_size - tokenizer.get_vocab_size())]
    tokenizer.add_tokens([AddedToken(t, normalized=False) for t in unused])
    ids = {t: tokenizer.token_to_id(t) for t in specials}
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
        mask_token="[MASK]", model_max_length=8192,
        model_input_names=["input_ids", "attention_mask"], clean_up_tokenization_spaces=True,
    )
    fast.save_pretrained(str(directory))  # tokenizer.json, tokenizer_config.json, special_tokens_map.json
    # Tiny but with the real layer pattern: layer 0 global attention, layer 1 sliding-window
    # (global_attn_every_n_layers=3). No attention implementation is pinned (the hub config
    # pins none); without flash-attn installed transformers falls back to sdpa/eager on CPU.
    _write_json(directory / "config.json", {
        "architectures": ["ModernBertForMaskedLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": ids["[CLS]"],
        "classifier_activation": "gelu",
        "classifier_bias": False,
        "classifier_dropout": 0.0,
        "classifier_pooling": "mean",
        "cls_token_id": ids["[CLS]"],
        "decoder_bias": True,
        "deterministic_flash_attn": False,
        "embedding_dropout": 0.0,
        "eos_token_id": ids["[SEP]"],
        "global_attn_every_n_layers": 3,
        "global_rope_theta": 160000.0,
        "gradient_checkpointing": False,
        "hidden_activation": "gelu",
        "hidden_size": 64,
        "initializer_cutoff_factor": 2.0,
        "initializer_range": 0.02,
        "intermediate_size": 96,
        "layer_norm_eps": 1e-05,
        "local_attention": 128,
        "local_rope_theta": 10000.0,
        "max_position_embeddings": 8192,
        "mlp_bias": False,
        "mlp_dropout": 0.0,
        "model_type": "modernbert",
        "norm_bias": False,
        "norm_eps": 1e-05,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "pad_token_id": ids["[PAD]"],
        "position_embedding_type": "absolute",
        "sep_token_id": ids["[SEP]"],
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "vocab_size": vocab_size,
    })
    _save_weights(_random_model(ModernBertForMaskedLM, directory), directory, safetensors=True)


def _build_mt5(directory: Path, text: list[str]) -> None:
    """google/mt5-small: spiece.model + tokenizer_config.json + special_tokens_map.json and a
    full encoder-decoder pytorch_model.bin (GLiNER uses only the encoder)."""
    from transformers import MT5ForConditionalGeneration

    spm_vocab = 3000
    # T5 conventions: <pad>=0 </s>=1 <unk>=2, no BOS. mT5 has no <extra_id_*> pieces.
    model_bytes = _train_sentencepiece(
        text, spm_vocab, 1.0, pad_id=0, pad_piece="<pad>", eos_id=1, eos_piece="</s>",
        unk_id=2, unk_piece="<unk>", bos_id=-1)
    (directory / "spiece.model").write_bytes(model_bytes)
    special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    _write_json(directory / "special_tokens_map.json", special)
    _write_json(directory / "tokenizer_config.json",
                {**special, "extra_ids": 0, "additional_special_tokens": None})
    _write_json(directory / "config.json", {
        "architectures": ["MT5ForConditionalGeneration"],
        "d_ff": 128,
        "d_kv": 32,
        "d_model": 64,
        "decoder_start_token_id": 0,
        "dropout_rate": 0.1,
        "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu",
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "layer_norm_epsilon": 1e-06,
        "model_type": "mt5",
        "num_decoder_layers": 2,
        "num_heads": 2,
        "num_layers": 2,
        "pad_token_id": 0,
        "relative_attention_num_buckets": 32,
        "tie_word_embeddings": False,
        "tokenizer_class": "T5Tokenizer",
        # real: 250112 rows for 250100 pieces (padded to a multiple of 128)
        "vocab_size": _round_up(spm_vocab + 1, 128),
    })
    _save_weights(_random_model(MT5ForConditionalGeneration, directory), directory, bin=True)


def _build_gpt2(directory: Path, text: list[str]) -> None:
    """openai-community/gpt2: vocab.json + merges.txt + tokenizer.json + tokenizer_config.json
    and model.safetensors holding base-model keys (wte, h.0..., no "transformer." prefix)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import GPT2Model

    eos = "<|endoftext|>"
    trained = _byte_level_bpe(text, 2999)
    with tempfile.TemporaryDirectory() as scratch:
        vocab_file, merges_file = trained.model.save(scratch)
        vocab = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        merges = Path(merges_file).read_text(encoding="utf-8")
    # GPT-2 keeps <|endoftext|> as the LAST entry of vocab.json (50256 of 50257), so the
    # end-of-sequence id lies inside the model's embedding table.
    vocab[eos] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text(merges, encoding="utf-8")

    tokenizer = Tokenizer(models.BPE.from_file(str(directory / "vocab.json"),
                                               str(directory / "merges.txt")))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens([AddedToken(eos, normalized=False)])  # reuses the vocab id
    assert tokenizer.token_to_id(eos) == len(vocab) - 1
    tokenizer.save(str(directory / "tokenizer.json"))
    _write_json(directory / "tokenizer_config.json", {"model_max_length": 1024})
    _write_json(directory / "config.json", {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": vocab[eos],
        "embd_pdrop": 0.1,
        "eos_token_id": vocab[eos],
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": 1024,
        "n_embd": 64,
        "n_head": 2,
        "n_layer": 2,
        "n_positions": 1024,
        "resid_pdrop": 0.1,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "vocab_size": len(vocab),
    })
    _save_weights(_random_model(GPT2Model, directory), directory, safetensors=True)


_BUILDERS: dict[str, Callable[[Path, list[str]], None]] = {
    "deberta-v3": _build_deberta_v3,
    "mdeberta-v3": _build_mdeberta_v3,
    "xlm-roberta": _build_xlm_roberta,
    "modernbert": _build_modernbert,
    "mt5": _build_mt5,
    "gpt2": _build_gpt2,
}


def build_base_encoder(kind: str, directory: Path, text_source: Iterable[str] | None = None) -> Path:
    """Write a tiny random-weight replica of the hub repo ``HUB_REPOS[kind]`` into
    ``directory`` (created if missing; must hold no other files of the layout) and return it.

    ``text_source``: sentences to train the tokenizer on; by default ``default_text(kind)``
    (real sentences from the shared corpora). A few thousand sentences are needed for the
    SentencePiece vocabularies (3000-4000 pieces)."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown encoder kind {kind!r}; expected one of {', '.join(KINDS)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = default_text(kind) if text_source is None else [s for s in text_source if s.strip()]
    if not text:
        raise ValueError("text_source gave no sentences to train the tokenizer on")
    _BUILDERS[kind](directory, text)
    return directory
