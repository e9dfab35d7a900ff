"""Opt-in inference speed-ups (int8 quantisation, reduced precision) and zero-copy label ranking.

Speed is measured in bench/, not here: these tests check that each option really changes what
runs, keeps the float32 weights that training and saving use, and fails early and clearly where
it cannot apply.
"""
import numpy as np
import pytest
import torch

from spacy_gliner.inference.entities import DecodeSettings, EntityExtractor
from spacy_gliner.modeling.acceleration import accelerated, check_acceleration
from spacy_gliner.modeling.checkpoint import load_checkpoint
from spacy_gliner.modeling.label_cache import LabelVectorCache

from support import crossner_labels, crossner_sentences, split_words


@pytest.fixture(scope="module")
def uni_extractor(checkpoints):
    return EntityExtractor(load_checkpoint(checkpoints("uni_markerV0")))


def _quantized_linears(module):
    return [m for m in module.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")]


def test_int8_quantizes_a_view_and_leaves_the_float32_model_alone(uni_extractor):
    ex = uni_extractor
    before = {k: v.clone() for k, v in ex.model.state_dict().items()}
    docs = [split_words(s) for s in crossner_sentences("politics", 6)]
    labels = crossner_labels("politics")
    plain = ex.extract(docs, labels, DecodeSettings(0.3))
    ex.accelerate(quantize="int8")
    try:
        assert ex.inference_model is not ex.model
        assert len(_quantized_linears(ex.inference_model.text_encoder)) >= 36  # 6 layers x 6 linear maps
        assert not _quantized_linears(ex.model)
        assert ex.inference_model.span_head is ex.model.span_head  # heads shared, not copied
        quantized = ex.extract(docs, labels, DecodeSettings(0.3))
    finally:
        ex.accelerate()
    assert ex.inference_model is ex.model
    after = ex.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # int8 encoders give other numbers; the decoded output is still well-formed spans over the words
    assert sum(map(len, quantized)) > 0
    for words, spans in zip(docs, quantized):
        assert all(0 <= s.start < s.end <= len(words) and 0 < s.score <= 1 for s in spans)
    assert ex.extract(docs, labels, DecodeSettings(0.3)) == plain


def test_bfloat16_autocast_runs_on_cpu_and_returns_float32_scores(uni_extractor):
    ex = uni_extractor
    docs = [split_words(s) for s in crossner_sentences("music", 4)]
    ex.accelerate(precision="bfloat16")
    try:
        found = ex.extract(docs, crossner_labels("music"), DecodeSettings(0.2))
    finally:
        ex.accelerate()
    assert sum(map(len, found)) > 0
    assert all(isinstance(s.score, float) for spans in found for s in spans)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(quantize="int4"), "'quantize' must be null or 'int8'"),
        (dict(precision="half"), "'precision' must be one of"),
        (dict(compile="yes"), "'compile' must be true or false"),
        (dict(quantize="int8", precision="bfloat16"), "cannot be combined"),
    ],
)
def test_bad_acceleration_settings_are_named(settings, message):
    full = dict(quantize=None, precision="float32", compile=False) | settings
    with pytest.raises(ValueError, match=message):
        check_acceleration(full["quantize"], full["precision"], full["compile"], "gliner_ner")


def test_float16_on_cpu_is_refused_with_the_alternative(uni_extractor):
    with pytest.raises(ValueError, match="'float16' needs a GPU; on CPU use 'bfloat16'"):
        accelerated(uni_extractor.model, None, "float16", False, "gliner_ner")


def test_ranking_reads_a_memory_mapped_cache_in_place(tmp_path):
    rng = np.random.default_rng(0)
    cache = LabelVectorCache("float16")
    cache.add([f"label {i}" for i in range(5000)], rng.normal(size=(5000, 32)))
    cache.to_disk(tmp_path)
    loaded = LabelVectorCache().from_disk(tmp_path)
    assert loaded.is_memory_mapped
    rows = loaded.rows([f"label {i}" for i in range(5000)])
    stored = loaded.stored_tensor(rows)
    assert stored.dtype == torch.float16
    assert np.shares_memory(stored.numpy(), loaded._base)  # no copy of the cache per batch
    shuffled = rows[::-1].copy()
    copied = loaded.stored_tensor(shuffled)  # not consecutive rows: one gathered copy, same values
    assert not np.shares_memory(copied.numpy(), loaded._base)
    assert torch.equal(copied, stored.flip(0))


def test_component_settings_checked_at_add_pipe_and_applied(checkpoints, tmp_path):
    import spacy

    ckpt = str(checkpoints("bi_span"))
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="'quantize' must be null or 'int8'"):
        nlp.add_pipe("gliner_ner", config={"model": ckpt, "labels": ["person"], "quantize": "fp8"})
    pipe = nlp.add_pipe("gliner_ner", config={"model": ckpt, "labels": ["person", "organisation"], "quantize": "int8"})
    docs = list(nlp.pipe(crossner_sentences("politics", 4)))
    assert _quantized_linears(pipe.extractor.inference_model.text_encoder)
    assert _quantized_linears(pipe.extractor.inference_model.label_encoder)
    assert all(d.spans["sc"].attrs["scores"] is not None for d in docs)
    with pytest.raises(ValueError, match="'quantize' and 'compile' are for inference"):
        pipe._make_trainer()
    # saved in float32 (the reference layout); reloaded with the same setting, quantised again
    nlp.to_disk(tmp_path / "pipeline")
    reloaded = spacy.load(tmp_path / "pipeline")
    assert reloaded.get_pipe("gliner_ner").cfg["quantize"] == "int8"
    assert _quantized_linears(reloaded.get_pipe("gliner_ner").extractor.inference_model.text_encoder)
    assert not _quantized_linears(reloaded.get_pipe("gliner_ner").extractor.model)
