"""The ready configs in component_configs/ build working pipelines."""
from pathlib import Path

from spacy.util import load_config, load_model_from_config

CONFIGS = Path(__file__).resolve().parents[1] / "component_configs"


def test_inference_config_builds_a_working_pipeline(checkpoints):
    config = load_config(
        CONFIGS / "gliner_ner_inference.cfg",
        overrides={"components.gliner_ner.model": str(checkpoints("uni_sharp"))},
    )
    nlp = load_model_from_config(config, auto_fill=True)
    doc = nlp("Angela Merkel met Emmanuel Macron in Paris on Monday.")
    assert nlp.pipe_names == ["gliner_ner"]
    assert nlp.get_pipe("gliner_ner").labels == ("person", "organization", "location", "date")
    assert len(doc.spans["sc"]) == len(doc.spans["sc"].attrs["scores"]) > 0


def test_linker_training_config_validates_as_spacy_debug_config_does(checkpoints, tmp_path):
    """``spacy debug config`` on component_configs/gliner_linker_train.cfg (the linking project's
    training config): the pipeline and its corpora resolve, the linker reads its KB."""
    import json

    from spacy.cli.debug_config import debug_config
    from spacy.tokens import DocBin

    DocBin().to_disk(tmp_path / "empty.spacy")
    kb = tmp_path / "kb.jsonl"
    kb.write_text(json.dumps({"id": "Q90", "name": "Paris", "aliases": ["City of Light"]}) + "\n", encoding="utf-8")
    overrides = {"paths.train": str(tmp_path / "empty.spacy"), "paths.dev": str(tmp_path / "empty.spacy"),
                 "paths.model": str(checkpoints("bi_sharp")), "paths.kb": str(kb)}
    debug_config(CONFIGS / "gliner_linker_train.cfg", overrides=overrides)
    config = load_config(CONFIGS / "gliner_linker_train.cfg", overrides=overrides)
    nlp = load_model_from_config(config, auto_fill=True)
    assert nlp.pipe_names == ["gliner_linker"] and len(nlp.get_pipe("gliner_linker").kb) == 1


def test_decoder_training_config_trains_and_generates(hub_families, tmp_path):
    """component_configs/gliner_ner_decoder_train.cfg on MiniLM and the GPT-2 replica: spaCy's
    config check passes, and the pipeline it builds trains and writes generated labels."""
    from spacy.cli.debug_config import debug_config
    from spacy.tokens import Doc, DocBin
    from spacy.training import Example

    from support import minilm_dir

    hub_families("span_decoder")  # puts the GPT-2 replica in the hub cache as openai-community/gpt2
    DocBin().to_disk(tmp_path / "empty.spacy")
    overrides = {"paths.train": str(tmp_path / "empty.spacy"), "paths.dev": str(tmp_path / "empty.spacy"),
                 "paths.encoder": str(minilm_dir()), "paths.decoder": "openai-community/gpt2",
                 "components.gliner_ner.new_model.hidden_size": 48}
    debug_config(CONFIGS / "gliner_ner_decoder_train.cfg", overrides=overrides)
    nlp = load_model_from_config(load_config(CONFIGS / "gliner_ner_decoder_train.cfg", overrides=overrides), auto_fill=True)
    words = ["Nirvana", "released", "Nevermind", "in", "1991", "."]
    gold = Doc(nlp.vocab, words=words, ents=["B-band", "O", "B-album", "O", "O", "O"])
    examples = [Example(Doc(nlp.vocab, words=words), gold)]
    nlp.initialize(lambda: examples)
    losses = nlp.update(examples, losses={})
    assert losses["gliner_ner"] > 0
    nlp.get_pipe("gliner_ner").cfg["threshold"] = 0.0
    doc = nlp(Doc(nlp.vocab, words=words))
    assert len(doc.spans["sc"]) == len(doc.spans["sc"].attrs["generated_labels"]) > 0
