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
]

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
    from .relation_heads import REFERENCE_KEY_PREFIXES

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
    return GlinerConfig.from_dict(data, source=str(config_path))


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


def _load_tokenizer(directory: Path, fallback_name: str, special_tokens: List[str]):
    from transformers import AutoTokenizer

    if (directory / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(directory))
    # Older hub checkpoints ship no tokenizer: the reference rebuilds it from the base encoder.
    try:
        tokenizer = AutoTokenizer.from_pretrained(fallback_name)
    except Exception as error:
        raise CheckpointError(
            f"{directory} has no tokenizer files and the base encoder tokenizer {fallback_name!r} "
            f"cannot be loaded ({type(error).__name__}: {error})."
        ) from None
    if special_tokens:
        tokenizer.add_tokens(special_tokens, special_tokens=True)
    return tokenizer


def check_checkpoint_files(directory: Path) -> GlinerConfig:
    """Config readable and supported, a weights file present; nothing heavy is loaded."""
    config = read_config(directory)
    if not (directory / SAFETENSORS_FILE).exists() and not (directory / TORCH_FILE).exists():
        raise CheckpointError(f"{directory} has no weights: expected {SAFETENSORS_FILE} or {TORCH_FILE}.")
    return config


def label_lengths(directory: Path, label_texts) -> None:
    """Raise if a label cannot be read whole by the checkpoint's encoder (tokenizers only)."""
    from .inputs import InputBuilder
    from ..extraction import EntityExtractor

    config = read_config(directory)
    if config.encoder_config is None:
        return  # needs the base encoder's config; checked when the model loads
    tokenizer = _load_tokenizer(directory, config.model_name, [])
    label_tokenizer = _load_tokenizer(directory / LABELS_TOKENIZER_DIR, config.labels_encoder_name, []) if config.bi_encoder else None
    EntityExtractor.check_label_lengths(InputBuilder(tokenizer, config, label_tokenizer), label_texts)


def load_checkpoint(name_or_path: Union[str, Path], extra_prefixes: List[Tuple[str, str]] = ()) -> GlinerCheckpoint:
    directory = resolve_checkpoint_dir(name_or_path)
    config = read_config(directory)
    weights = read_weights(directory)
    if config.encoder_config is None:
        config.encoder_config = encoder_config_from_pretrained(config.model_name, config.vocab_size)
    if config.bi_encoder and config.labels_encoder_config is None:
        config.labels_encoder_config = encoder_config_from_pretrained(config.labels_encoder_name)
    special = [] if config.bi_encoder else ["[FLERT]", config.ent_token, config.sep_token]
    if config.relex:
        special.append(config.rel_token)
    tokenizer = _load_tokenizer(directory, config.model_name, special)
    label_tokenizer = None
    if config.bi_encoder:
        label_tokenizer = _load_tokenizer(directory / LABELS_TOKENIZER_DIR, config.labels_encoder_name, [])
    if not config.bi_encoder:
        ent_id = tokenizer.convert_tokens_to_ids(config.ent_token)
        if config.class_token_index != ent_id:
            raise CheckpointError(
                f"{directory}: class_token_index is {config.class_token_index} but the tokenizer maps "
                f"{config.ent_token!r} to {ent_id}; the tokenizer does not belong to these weights."
            )
    model = GlinerModel.from_config(config)
    load_state_strictly(model, to_our_keys(weights, list(extra_prefixes) + relation_prefixes(config)), str(directory))
    model.eval()
    return GlinerCheckpoint(config, model, tokenizer, label_tokenizer)


def load_state_strictly(model: torch.nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.endswith(_IGNORABLE_SUFFIXES)}
    missing = sorted(k for k in expected if k not in state and not k.endswith(_IGNORABLE_SUFFIXES))
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


def save_checkpoint(checkpoint: GlinerCheckpoint, directory: Union[str, Path], extra_prefixes=()) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(checkpoint.config.to_dict(), indent=2), encoding="utf8")
    state = {k: v.detach().cpu().contiguous() for k, v in checkpoint.model.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith(_IGNORABLE_SUFFIXES)}
    extra = list(extra_prefixes) + relation_prefixes(checkpoint.config)
    save_file(to_reference_keys(state, extra), str(directory / SAFETENSORS_FILE))
    checkpoint.tokenizer.save_pretrained(str(directory))
    if checkpoint.label_tokenizer is not None:
        checkpoint.label_tokenizer.save_pretrained(str(directory / LABELS_TOKENIZER_DIR))
