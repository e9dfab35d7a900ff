"""Reading and writing GLiNER checkpoint directories, strictly.

A checkpoint directory holds ``gliner_config.json``, ``model.safetensors`` or
``pytorch_model.bin``, and tokenizer files (``labels_tokenizer/`` too for bi-encoders). We write
the same layout with the reference package's weight names, so our saved models stay loadable by
``gliner`` as well.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from .config import GlinerConfig
from .encoders import encoder_config_from_pretrained
from .model import GlinerModel

CONFIG_FILE = "gliner_config.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "pytorch_model.bin"
LABELS_TOKENIZER_DIR = "labels_tokenizer"
DECODER_TOKENIZER_DIR = "decoder_tokenizer"

# Reference state-dict prefixes -> ours. Order matters: longer, more specific prefixes first.
REFERENCE_PREFIXES: List[Tuple[str, str]] = [
    ("token_rep_layer.bert_layer.model.", "text_encoder.transformer."),
    ("token_rep_layer.projection.", "text_encoder.projection."),
    ("token_rep_layer.labels_encoder.model.", "label_encoder.transformer."),
    ("token_rep_layer.labels_projection.", "label_encoder.projection."),
    ("rnn.lstm.", "word_lstm.lstm."),
    ("span_rep_layer.span_rep_layer.", "span_head."),
    ("prompt_rep_layer.", "label_projection."),
    ("scorer.", "token_scorer."),
    ("cross_fuser.", "post_fusion."),
    ("decoder.decoder_layer.model.", "label_decoder.language_model."),
    ("_enc2dec_proj.", "label_decoder.projection."),
]

# Our names of the text tower's weights (a bi-encoder listening to a spaCy transformer has none).
TEXT_TOWER_PREFIX = "text_encoder.transformer."

# Buffers some transformers versions saved and others rebuild; never weights.
_IGNORABLE_SUFFIXES = ("embeddings.position_ids",)


class CheckpointError(ValueError):
    """A checkpoint directory is incomplete, corrupt or does not match its config."""


@dataclass
class GlinerCheckpoint:
    config: GlinerConfig
    model: GlinerModel
    tokenizer: Any
    label_tokenizer: Optional[Any] = None
    decoder_tokenizer: Optional[Any] = None  # generative label decoder models


def _rename(key: str, table: List[Tuple[str, str]]) -> Optional[str]:
    for source, target in table:
        if key.startswith(source):
            return target + key[len(source):]
    return None


def to_our_keys(state: Dict[str, torch.Tensor], extra: List[Tuple[str, str]] = ()) -> Dict[str, torch.Tensor]:
    table = list(extra) + REFERENCE_PREFIXES
    renamed, unknown = {}, []
    for key, value in state.items():
        new_key = _rename(key, table)
        if new_key is None:
            unknown.append(key)
        else:
            renamed[new_key] = value
    if unknown:
        raise CheckpointError(
            f"checkpoint has weights no supported GLiNER layer uses: {sorted(unknown)[:10]}"
            f"{' ...' if len(unknown) > 10 else ''}"
        )
    return renamed


def to_reference_keys(state: Dict[str, torch.Tensor], extra: List[Tuple[str, str]] = ()) -> Dict[str, torch.Tensor]:
    table = [(ours, ref) for ref, ours in list(extra) + REFERENCE_PREFIXES]
    out = {}
    for key, value in state.items():
        new_key = _rename(key, table)
        if new_key is None:
            raise CheckpointError(f"no reference name for weight {key!r}")
        out[new_key] = value
    return out


def relation_prefixes(config: GlinerConfig) -> List[Tuple[str, str]]:
    """Relex checkpoints: reference prefixes of the relation part -> ``relation_head.*`` (longest first).

    Pairs of reference names map to one of ours (``proj.``/``linear.`` of the adjacency layer,
    ``r_to_rtr.``/``r_to_rvec.`` of the triple scorer), so only the one the checkpoint's
    ``relations_layer`` / ``triples_layer`` uses is listed, keeping saving unambiguous.
    """
    if not config.relex:
        return []
    from .relations.reference_keys import REFERENCE_KEY_PREFIXES

    layer = (config.relations_layer or "").lower()
    skip = {"relations_rep_layer.relation_rep_layer." + ("proj." if layer == "gat" else "linear.")}
    # TransF names its translation layer r_to_rvec, TransH r_to_rtr; no other mode has one
    skip.add("triples_score_layer.interaction." + ("r_to_rtr." if config.raw.get("triples_layer") == "TransF" else "r_to_rvec."))
    table = [(ref, "relation_head." + ours) for ref, ours in REFERENCE_KEY_PREFIXES.items() if ref not in skip]
    return sorted(table, key=lambda pair: len(pair[0]), reverse=True)


def resolve_checkpoint_dir(name_or_path: Union[str, Path]) -> Path:
    """A local checkpoint directory, or a hub id fetched (or found in the cache) with huggingface_hub."""
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"GLiNER checkpoint {str(path)!r} is a file; pass the directory holding {CONFIG_FILE}.")
        return path
    text = str(name_or_path)
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") != 1 or os.sep + os.sep in text
    if looks_like_path:
        raise CheckpointError(
            f"GLiNER checkpoint directory {text!r} does not exist. Pass an existing directory with "
            f"{CONFIG_FILE}, or a hub id such as 'urchade/gliner_small-v2.1'."
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=text))
    except Exception as error:  # the hub client raises many types for one cause: not reachable
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise CheckpointError(
            f"could not get GLiNER checkpoint {text!r} from the Hugging Face hub "
            f"({type(error).__name__}: {error}). "
            + ("HF_HUB_OFFLINE is set, so only checkpoints already in the local cache are used. " if offline else "")
            + "Download it on a machine with network access (`huggingface-cli download "
            f"{text}`) and pass the local directory instead."
        ) from None


def read_config(directory: Path) -> GlinerConfig:
    config_path = directory / CONFIG_FILE
    if not config_path.exists():
        raise CheckpointError(f"{directory} is not a GLiNER checkpoint: {CONFIG_FILE} is missing.")
    try:
        data = json.loads(config_path.read_text(encoding="utf8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_path} is not valid JSON: {error}") from None
    check_config_values(data, config_path)
    return GlinerConfig.from_dict(data, source=str(config_path))


# Integer settings of gliner_config.json and the least value each can take; None is allowed
# (the reference then uses its default).
_INTEGER_KEYS = {"hidden_size": 1, "max_width": 1, "max_len": 2, "num_rnn_layers": 0,
                 "class_token_index": -1, "vocab_size": -1, "rel_token_index": -1}


def check_config_values(data: Any, config_path: Path) -> None:
    """Raise a CheckpointError naming the file and the key for what GlinerConfig cannot read."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object of settings, not a {type(data).__name__}.")
    for key, minimum in _INTEGER_KEYS.items():
        value = data.get(key)
        if value is None:
            continue
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not integral:
            raise CheckpointError(f"{config_path}: {key!r} must be an integer, got {value!r}.")
        if value < minimum:
            raise CheckpointError(f"{config_path}: {key!r} must be at least {minimum}, got {value!r}.")


def check_weights_file(directory: Path) -> Path:
    """The weights file, after a cheap look at its framing (nothing is loaded): a safetensors
    header that parses and accounts for the whole file, or a readable zip directory (torch)."""
    import struct
    import zipfile

    safetensors_path, torch_path = directory / SAFETENSORS_FILE, directory / TORCH_FILE
    if safetensors_path.exists():
        size = safetensors_path.stat().st_size
        try:
            with safetensors_path.open("rb") as handle:
                (header_size,) = struct.unpack("<Q", handle.read(8))
                if header_size > size - 8:
                    raise ValueError(f"header of {header_size} bytes in a file of {size}")
                header = json.loads(handle.read(header_size))
            ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
            if 8 + header_size + max(ends, default=0) != size:
                raise ValueError(f"tensors end at byte {8 + header_size + max(ends, default=0)}, the file has {size}")
        except Exception as error:  # struct, JSON, key and type errors all mean one thing here
            raise CheckpointError(
                f"weights file {safetensors_path} is corrupt or truncated ({type(error).__name__}: {error}). "
                "Re-download or re-save the checkpoint."
            ) from None
        return safetensors_path
    if torch_path.exists():
        with torch_path.open("rb") as handle:
            legacy_pickle = handle.read(1) == b"\x80"  # torch.save before its zip format
        if not legacy_pickle and not zipfile.is_zipfile(torch_path):
            raise CheckpointError(
                f"weights file {torch_path} is corrupt or truncated (not a readable torch zip archive). "
                "Re-download or re-save the checkpoint."
            )
        return torch_path
    raise CheckpointError(f"{directory} has no weights: expected {SAFETENSORS_FILE} or {TORCH_FILE}.")


def read_weights(directory: Path) -> Dict[str, torch.Tensor]:
    safetensors_path, torch_path = directory / SAFETENSORS_FILE, directory / TORCH_FILE
    try:
        if safetensors_path.exists():
            from safetensors.torch import load_file

            return load_file(str(safetensors_path))
        if torch_path.exists():
            return torch.load(str(torch_path), map_location="cpu", weights_only=True)
    except Exception as error:
        bad = safetensors_path if safetensors_path.exists() else torch_path
        raise CheckpointError(
            f"weights file {bad} cannot be read ({type(error).__name__}: {error}); it is corrupt or "
            "truncated. Re-download or re-save the checkpoint."
        ) from None
    raise CheckpointError(f"{directory} has no weights: expected {SAFETENSORS_FILE} or {TORCH_FILE}.")


def _load_tokenizer(directory: Path, fallback_name: Optional[str]):
    """The tokenizer saved in ``directory``, else the base encoder's (older hub checkpoints ship
    none), loaded as the reference loads it."""
    from transformers import AutoTokenizer

    if (directory / "tokenizer_config.json").exists():
        source = str(directory)
        if not any((directory / name).exists() for name in _VOCABULARY_FILES):
            raise CheckpointError(
                f"{directory / 'tokenizer_config.json'} has no vocabulary beside it: expected one of "
                f"{', '.join(_VOCABULARY_FILES)} in {directory}. Re-save the tokenizer with the checkpoint."
            )
    elif fallback_name:
        source = fallback_name
    else:
        raise CheckpointError(f"{directory} has no tokenizer files and the config names no base encoder to take them from.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as error:
        hint = _missing_package_hint(error)
        raise CheckpointError(
            f"the tokenizer of {directory} cannot be loaded from {source!r} ({type(error).__name__}: {error}). "
            + (hint or "Older GLiNER checkpoints take their tokenizer from the base encoder named in "
               "gliner_config.json's 'model_name': have it in the local Hugging Face cache or pass a directory.")
        ) from None
    # The reference opts in to BOS/EOS where a tokenizer defines them (SentencePiece decoders).
    if hasattr(tokenizer, "add_bos_token") and tokenizer.bos_token_id is not None:
        tokenizer.add_bos_token = True
    if hasattr(tokenizer, "add_eos_token") and tokenizer.eos_token_id is not None:
        tokenizer.add_eos_token = True
    return tokenizer


# Files a Hugging Face tokenizer reads its vocabulary from (fast JSON, WordPiece, BPE, SentencePiece).
_VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                     "tokenizer.model", "spm.model")


def _missing_package_hint(error: Exception) -> Optional[str]:
    text = str(error).lower()
    for package in ("sentencepiece", "protobuf", "tiktoken"):
        if package in text:
            return f"The tokenizer needs the '{package}' package: pip install {package}."
    return None


def _base_encoder_config(name: Optional[str], vocab_size: int, directory: Path) -> Dict[str, Any]:
    if not name:
        raise CheckpointError(f"{directory}: gliner_config.json has no encoder config and names no base encoder ('model_name').")
    try:
        return encoder_config_from_pretrained(name, vocab_size)
    except Exception as error:
        raise CheckpointError(
            f"{directory}: gliner_config.json holds no encoder config, so it is read from the base encoder "
            f"{name!r}, which cannot be loaded ({type(error).__name__}: {error}). Have {name!r} in the local "
            "Hugging Face cache (huggingface-cli download) or point 'model_name' at a local directory."
        ) from None


def prompt_special_tokens(config: GlinerConfig) -> List[str]:
    """The prompt tokens the reference adds to a tokenizer, in its order (the order fixes their ids)."""
    if config.relex:
        return [config.ent_token, config.sep_token, config.rel_token]
    return ["[FLERT]", config.ent_token, config.sep_token]


def open_tokenizers(directory: Path, config: GlinerConfig) -> Tuple[Any, Optional[Any]]:
    """Text and label tokenizers of a checkpoint, and the config completed as the reference does.

    Hub checkpoints come in several layouts. Newer ones embed ``encoder_config`` and ship their
    tokenizer with the prompt tokens already added; older ones hold only ``gliner_config.json``
    and weights, naming the base encoder in ``model_name``. For those the encoder config is the
    base encoder's (its ``vocab_size`` replaced by the config's when given), and when
    ``class_token_index`` or ``vocab_size`` is unset the prompt tokens are added to the tokenizer
    and the word-embedding table is sized to the grown tokenizer, exactly as when it was trained.
    """
    tokenizer = _load_tokenizer(directory, config.model_name)
    label_tokenizer = None
    if config.bi_encoder:
        label_tokenizer = _load_tokenizer(directory / LABELS_TOKENIZER_DIR, config.labels_encoder_name)
    if config.encoder_config is None:
        config.encoder_config = _base_encoder_config(config.model_name, config.vocab_size, directory)
    if config.bi_encoder and config.labels_encoder_config is None:
        config.labels_encoder_config = _base_encoder_config(config.labels_encoder_name, config.vocab_size, directory)
    if config.class_token_index == -1 or config.vocab_size == -1:
        tokenizer.add_tokens(prompt_special_tokens(config), special_tokens=True)
        if not config.bi_encoder:  # a bi-encoder's text tower never reads prompt tokens: no resize
            size = len(tokenizer)
            config.class_token_index = size - (3 if config.relex else 2)
            if config.relex:
                config.rel_token_index = size - 1
            if size != config.vocab_size:
                config.vocab_size = size
                config.encoder_config["vocab_size"] = size
    if not config.bi_encoder:
        ent_id = tokenizer.convert_tokens_to_ids(config.ent_token)
        if config.class_token_index != ent_id:
            raise CheckpointError(
                f"{directory}: class_token_index is {config.class_token_index} but the tokenizer maps "
                f"{config.ent_token!r} to {ent_id}; the tokenizer does not belong to these weights."
            )
    return tokenizer, label_tokenizer


def open_decoder_tokenizer(directory: Path, config: GlinerConfig):
    """The label decoder's tokenizer: ``decoder_tokenizer/`` of the checkpoint, else the decoder
    named in ``labels_decoder``, read as the reference reads it (a space before every word; the
    end-of-sequence token pads)."""
    from transformers import AutoTokenizer

    saved = directory / DECODER_TOKENIZER_DIR
    source, options = (str(saved), {}) if (saved / "tokenizer_config.json").exists() else (config.labels_decoder, {"add_prefix_space": True})
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
    except Exception as error:
        raise CheckpointError(
            f"the label decoder tokenizer of {directory} cannot be loaded from {source!r} ({type(error).__name__}: "
            f"{error}). Save it in {DECODER_TOKENIZER_DIR}/ beside the checkpoint or have {config.labels_decoder!r} "
            "in the local Hugging Face cache."
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise CheckpointError(f"the label decoder tokenizer from {source!r} has no end-of-sequence token; generation could never stop.")
    return tokenizer


def check_cached_hub_checkpoint(name: str) -> Optional[GlinerConfig]:
    """For a hub id already in the local Hugging Face cache, :func:`check_checkpoint_files` on its
    snapshot; None for anything else. Never downloads: a saved pipeline that names a hub id must
    load on a machine that never fetched it."""
    text = str(name)
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(text, CONFIG_FILE)
    except Exception:  # an id the hub client rejects is reported when the model loads
        return None
    return check_checkpoint_files(Path(cached).parent) if isinstance(cached, str) else None


def check_checkpoint_files(directory: Path) -> GlinerConfig:
    """Config readable and supported, a weights file present; nothing heavy is loaded."""
    config = read_config(directory)
    check_weights_file(directory)
    return config


def check_checkpoint_label_lengths(directory: Path, label_texts) -> None:
    """Raise if a label cannot be read whole by the checkpoint's encoder (tokenizers only)."""
    from .inputs import InputBuilder
    from .label_checks import check_label_lengths

    config = read_config(directory)
    tokenizer, label_tokenizer = open_tokenizers(directory, config)
    check_label_lengths(InputBuilder(tokenizer, config, label_tokenizer), label_texts)


def load_checkpoint(
    name_or_path: Union[str, Path], extra_prefixes: List[Tuple[str, str]] = (), text_tower: bool = True
) -> GlinerCheckpoint:
    """``text_tower=False`` (bi-encoders whose text tower is a shared spaCy transformer): the model
    without it; its weights are ignored if the directory has them, and not required if not."""
    directory = resolve_checkpoint_dir(name_or_path)
    config = read_config(directory)
    weights = read_weights(directory)
    tokenizer, label_tokenizer = open_tokenizers(directory, config)
    decoder_tokenizer = open_decoder_tokenizer(directory, config) if config.has_label_decoder else None
    model = GlinerModel.from_config(config)
    state = to_our_keys(weights, list(extra_prefixes) + relation_prefixes(config))
    if not text_tower and config.bi_encoder:  # (a uni-encoder's one encoder is its text tower)
        model.drop_text_tower()
        state = {k: v for k, v in state.items() if not k.startswith(TEXT_TOWER_PREFIX)}
    load_state_strictly(model, state, str(directory))
    model.eval()
    return GlinerCheckpoint(config, model, tokenizer, label_tokenizer, decoder_tokenizer)


def load_state_strictly(model: torch.nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.endswith(_IGNORABLE_SUFFIXES)}
    supplied = set(state)
    for names in tied_parameter_names(model):
        # Tied weights (T5's shared / encoder.embed_tokens) are one tensor saved under one name.
        if supplied.intersection(names):
            supplied.update(names)
    missing = sorted(k for k in expected if k not in supplied and not k.endswith(_IGNORABLE_SUFFIXES))
    unexpected = sorted(k for k in state if k not in expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing weights {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        if unexpected:
            parts.append(f"unexpected weights {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
        raise CheckpointError(
            f"{source}: weights do not match gliner_config.json: {'; '.join(parts)}. Refusing to run "
            "with randomly initialised layers."
        )
    shapes = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if shapes:
        k = shapes[0]
        raise CheckpointError(
            f"{source}: weight {k} has shape {tuple(state[k].shape)}, the config implies "
            f"{tuple(expected[k].shape)}."
        )
    model.load_state_dict(state, strict=False)


def tied_parameter_names(model: torch.nn.Module) -> List[List[str]]:
    """Groups of parameter names that share one tensor."""
    groups: Dict[int, List[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(parameter), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def save_checkpoint(checkpoint: GlinerCheckpoint, directory: Union[str, Path], extra_prefixes=()) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(checkpoint.config.to_dict(), indent=2), encoding="utf8")
    state = {k: v.detach().cpu().contiguous() for k, v in checkpoint.model.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith(_IGNORABLE_SUFFIXES)}
    for names in tied_parameter_names(checkpoint.model):
        for name in names[1:]:  # safetensors stores a shared tensor once
            state.pop(name, None)
    extra = list(extra_prefixes) + relation_prefixes(checkpoint.config)
    save_file(to_reference_keys(state, extra), str(directory / SAFETENSORS_FILE))
    checkpoint.tokenizer.save_pretrained(str(directory))
    if checkpoint.label_tokenizer is not None:
        checkpoint.label_tokenizer.save_pretrained(str(directory / LABELS_TOKENIZER_DIR))
    if checkpoint.decoder_tokenizer is not None:
        checkpoint.decoder_tokenizer.save_pretrained(str(directory / DECODER_TOKENIZER_DIR))
