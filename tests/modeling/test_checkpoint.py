"""modeling/checkpoint.py: loading stays strict and says what is wrong. A corrupt or truncated
weights file, a missing or unexpected weight, an unsupported or ill-typed config value, a config
that is not a JSON object and a tokenizer config without its vocabulary are each an error naming the
file and the key, at ``add_pipe`` (before any weights load) or at ``spacy.load``. Every published
family's loading rules are proven in test_checkpoint_families.py."""
import json
import shutil

import pytest
import spacy

import spacy_gliner.components.ner  # noqa: F401  (registers the factory)
from components.test_linker import model_dir as linker_model_dir  # noqa: F401  (fixture)
from support import crossner_labels

LABELS = crossner_labels("politics")[:6]


def ner_nlp(checkpoint, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoint), "labels": LABELS, **config})
    return nlp


def test_missing_or_corrupt_weights(checkpoints, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoints("uni_markerV0"), broken)
    weights = broken / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="pytorch_model.bin is corrupt or truncated"):  # at add_pipe, before loading
        spacy.blank("en").add_pipe("gliner_ner", config={"model": str(broken), "labels": LABELS})
    weights.unlink()
    with pytest.raises(ValueError, match="has no weights"):
        spacy.blank("en").add_pipe("gliner_ner", config={"model": str(broken), "labels": LABELS})


def test_missing_weight_key_is_named(checkpoints, tmp_path):
    import torch

    partial = tmp_path / "partial"
    shutil.copytree(checkpoints("uni_markerV0"), partial)
    state = torch.load(partial / "pytorch_model.bin", weights_only=True)
    del state["prompt_rep_layer.0.weight"]
    torch.save(state, partial / "pytorch_model.bin")
    from spacy_gliner.modeling.checkpoint import CheckpointError, load_checkpoint

    with pytest.raises(CheckpointError, match=r"missing weights \['label_projection.0.weight'\]"):
        load_checkpoint(partial)
    state["prompt_rep_layer.0.weight"] = torch.zeros(1024, 256)
    state["some_new_layer.weight"] = torch.zeros(2)
    torch.save(state, partial / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="some_new_layer.weight"):
        load_checkpoint(partial)


def test_unsupported_config_value_is_named(checkpoints, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(checkpoints("uni_markerV0"), odd)
    config = json.loads((odd / "gliner_config.json").read_text())
    config["span_mode"] = "conv_share"
    (odd / "gliner_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="span_mode 'conv_share' is not supported"):
        spacy.blank("en").add_pipe("gliner_ner", config={"model": str(odd), "labels": LABELS})


def broken_copy(source, tmp_path, **config_changes):
    target = tmp_path / "broken"
    shutil.copytree(source, target)
    config_path = target / "gliner_config.json"
    config = json.loads(config_path.read_text())
    config.update(config_changes)
    config_path.write_text(json.dumps(config))
    return target


@pytest.mark.parametrize("changes, message", [
    ({"max_width": "twelve"}, r"gliner_config.json: 'max_width' must be an integer, got 'twelve'"),
    ({"max_len": 0}, r"gliner_config.json: 'max_len' must be at least 2, got 0"),
    ({"hidden_size": 25.5}, r"gliner_config.json: 'hidden_size' must be an integer"),
])
def test_bad_config_values_name_the_file_and_key_at_add_pipe(checkpoints, tmp_path, changes, message):
    from spacy_gliner.modeling.checkpoint import CheckpointError

    directory = broken_copy(checkpoints("uni_markerV0"), tmp_path, **changes)
    with pytest.raises(CheckpointError, match=str(directory).replace(".", r"\.") + "/" + message):
        ner_nlp(directory)


def test_config_holding_a_json_list_names_the_file(checkpoints, tmp_path):
    from spacy_gliner.modeling.checkpoint import CheckpointError, load_checkpoint

    directory = broken_copy(checkpoints("uni_markerV0"), tmp_path)
    (directory / "gliner_config.json").write_text(json.dumps([["max_width", 12]]))
    with pytest.raises(CheckpointError, match=r"gliner_config.json must hold a JSON object of settings, not a list"):
        ner_nlp(directory)
    with pytest.raises(CheckpointError, match="not a list"):
        load_checkpoint(directory)


def test_tokenizer_config_without_vocabulary_names_the_file(checkpoints, tmp_path):
    from spacy_gliner.modeling.checkpoint import CheckpointError

    directory = broken_copy(checkpoints("uni_markerV0"), tmp_path)
    for name in ("tokenizer.json", "vocab.txt"):
        (directory / name).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=r"tokenizer_config.json has no vocabulary beside it: expected one of tokenizer.json"):
        ner_nlp(directory)


def test_truncated_safetensors_fails_at_add_pipe_and_spacy_load(linker_model_dir, checkpoints, tmp_path):
    from spacy_gliner.modeling.checkpoint import CheckpointError

    directory = broken_copy(linker_model_dir, tmp_path)
    weights = directory / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) - 1000])
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt or truncated"):
        ner_nlp(directory)
    weights.write_bytes(b"\xff" * 64)  # a header length larger than the file
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt or truncated"):
        ner_nlp(directory)
    # A saved pipeline whose weights were damaged afterwards fails at spacy.load.
    nlp = ner_nlp(checkpoints("uni_markerV0"))
    nlp.to_disk(tmp_path / "saved")
    saved = tmp_path / "saved" / "gliner_ner" / "checkpoint" / "model.safetensors"
    saved.write_bytes(saved.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        spacy.load(tmp_path / "saved")
