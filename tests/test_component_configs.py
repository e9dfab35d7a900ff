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
