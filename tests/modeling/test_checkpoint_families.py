"""Every published GLiNER checkpoint family, stored as the hub stores it, loads by hub id through
``nlp.add_pipe`` and gives the reference package's spans, labels and scores.

The replicas (``zoo/families.py``) are tiny random-weight models built by the reference on local
base encoders, rewritten into each family's hub layout and placed in a throwaway hub cache;
``HF_HUB_OFFLINE=1`` makes both sides resolve the hub ids from that cache alone.
"""
import json
import re
from pathlib import Path

import pytest
import spacy

from support import (
    assert_same, crossner_labels, crossner_sentences, label_ties, separating_threshold, our_spans, reference_spans,
)
from zoo.families import FAMILIES
from zoo.hub import hub_cache_dir

LABELS = crossner_labels("AI")[:5] + ["musical artist"]
TEXTS = crossner_sentences("AI", 3) + crossner_sentences("music", 3)
SCORE_TOLERANCE = 1e-5


def reference_model(hub_id):
    from gliner import GLiNER

    model = GLiNER.from_pretrained(hub_id)
    model.eval()
    return model


def threshold_for(reference, texts, labels):
    """Half of the spans the reference decodes at threshold 0 pass it (see separating_threshold)."""
    floor = reference_spans(reference, texts, labels, True, 0.0)
    return separating_threshold([span[3] for doc in floor for span in doc], 0.5)


def gliner_pipeline(hub_id, labels, **settings):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": hub_id, "labels": labels, "batch_size": 4, **settings})
    return nlp


@pytest.mark.parametrize("name", [name for name in FAMILIES if name != "nuner_zero"])
def test_family_matches_reference(name, hub_families):
    hub_id = hub_families(name)
    reference = reference_model(hub_id)
    threshold = threshold_for(reference, TEXTS, LABELS)
    nlp = gliner_pipeline(hub_id, LABELS, threshold=threshold)
    ties = label_ties(reference, TEXTS, LABELS)
    for nested in (False, True):
        nlp.get_pipe("gliner_ner").cfg["nested"] = nested
        expected = reference_spans(reference, TEXTS, LABELS, not nested, threshold)
        assert_same(expected, our_spans(nlp, TEXTS), tolerance=SCORE_TOLERANCE, ties=ties)


def model_card_merge(text, entities):
    """NuNER Zero's model card: join neighbouring entities of one label (at most one character
    apart), keeping the first one's score."""
    merged = []
    for entity in sorted(entities, key=lambda e: e["start"]):
        last = merged[-1] if merged else None
        if last and last["label"] == entity["label"] and entity["start"] - last["end"] in (0, 1):
            last["end"] = entity["end"]
            last["text"] = text[last["start"] : entity["end"]]
        else:
            merged.append(dict(entity))
    return merged


def test_nuner_zero_model_card_recipe_as_settings(hub_families):
    """``lowercase_labels`` and ``merge_adjacent`` give what NuNER Zero's card tells users to do by hand."""
    hub_id = hub_families("nuner_zero")
    reference = reference_model(hub_id)
    labels = ["Person", "Organization", "Location", "Algorithm", "Programming Language", "Country"]
    lowered = [label.lower() for label in labels]
    threshold = threshold_for(reference, TEXTS, lowered)
    outputs = reference.inference(TEXTS, lowered, flat_ner=True, threshold=threshold, batch_size=4)
    expected = []
    for text, entities in zip(TEXTS, outputs):
        words = list(re.finditer(r"\w+(?:[-_]\w+)*|\S", text))
        by_start = {m.start(): i for i, m in enumerate(words)}
        by_end = {m.end(): i for i, m in enumerate(words)}
        expected.append([(by_start[e["start"]], by_end[e["end"]] + 1, labels[lowered.index(e["label"])], e["score"])
                         for e in model_card_merge(text, entities)])
    assert any(end - start > 1 for doc in expected for start, end, _, _ in doc), "the recipe must merge something"
    nlp = gliner_pipeline(hub_id, labels, threshold=threshold, lowercase_labels=True, merge_adjacent=True)
    assert_same(expected, our_spans(nlp, TEXTS), tolerance=SCORE_TOLERANCE)


@pytest.mark.parametrize("name", ["gliner_v1", "gliner_x"])
def test_saved_pipeline_is_self_contained(name, hub_families, tmp_path):
    """A pipeline saved from a hub checkpoint holds its encoder config and tokenizer: it reloads
    with identical output and needs neither the base encoder nor the original hub repo."""
    hub_id = hub_families(name)
    nlp = gliner_pipeline(hub_id, LABELS, threshold=0.0, nested=True)
    before = our_spans(nlp, TEXTS[:2])
    nlp.to_disk(tmp_path / "pipeline")
    saved = json.loads((tmp_path / "pipeline" / "gliner_ner" / "checkpoint" / "gliner_config.json").read_text())
    assert saved["encoder_config"] and saved["vocab_size"] > 0 and saved["class_token_index"] >= 0
    cache = hub_cache_dir()
    aside = cache.with_name("hub-moved-aside")
    cache.rename(aside)  # the hub repos and base encoders are gone while the saved pipeline loads
    try:
        reloaded = spacy.load(tmp_path / "pipeline")
        assert our_spans(reloaded, TEXTS[:2]) == before
    finally:
        aside.rename(cache)


def test_refused_decoder_variant_is_named_at_add_pipe(hub_families, tmp_path):
    """A decoder checkpoint in prompt mode (which the reference cannot run either) stops at
    add_pipe with the variant and the reason."""
    import shutil

    from huggingface_hub import try_to_load_from_cache
    from spacy_gliner.modeling.config import UnsupportedCheckpointError

    snapshot = Path(try_to_load_from_cache(hub_families("span_decoder"), "gliner_config.json")).parent
    copy = tmp_path / "prompt-mode"
    shutil.copytree(snapshot, copy)
    config = json.loads((copy / "gliner_config.json").read_text())
    (copy / "gliner_config.json").unlink()
    (copy / "gliner_config.json").write_text(json.dumps({**config, "decoder_mode": "prompt"}))
    nlp = spacy.blank("en")
    with pytest.raises(UnsupportedCheckpointError, match="decoder_mode is 'prompt'.*fails in the reference"):
        nlp.add_pipe("gliner_ner", config={"model": str(copy), "labels": LABELS})
