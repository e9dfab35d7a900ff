"""The generative label decoder (UniEncoderSpanDecoder): strict loading and inference give the
reference's spans, scores and generated labels (gliner 0.2.29 ``inference(...,
gen_constraints=..., num_gen_sequences=k)``, greedy: ``do_sample=False``), flat and nested, with
and without constraints, on a replica built by the reference on the real MiniLM encoder and a
tiny GPT-2 decoder (tests/zoo/families.py)."""
import json
from pathlib import Path

import pytest

from support import WORD_SPLIT, crossner_labels, crossner_sentences, separating_threshold, split_words

LABELS = crossner_labels("music")[:4]
TEXTS = crossner_sentences("music", 3)
CONSTRAINTS = ["band", "musical artist", "song", "album", "country"]
SCORE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def decoder_hub_id(hub_families):
    return hub_families("span_decoder")


@pytest.fixture(scope="module")
def reference(decoder_hub_id):
    from gliner import GLiNER

    model = GLiNER.from_pretrained(decoder_hub_id)
    model.eval()
    return model


@pytest.fixture(scope="module")
def extractor(decoder_hub_id):
    from spacy_gliner.inference.entities import EntityExtractor
    from spacy_gliner.modeling.checkpoint import load_checkpoint

    return EntityExtractor(load_checkpoint(decoder_hub_id), batch_size=4)


def reference_generation(reference, texts, labels, flat, threshold, batch_size=4, **options):
    """(start word, end word exclusive, label, score, generated labels or None) per text."""
    outputs = reference.inference(
        texts, labels, flat_ner=flat, threshold=threshold, batch_size=batch_size, do_sample=False, **options
    )
    result = []
    for text, entities in zip(texts, outputs):
        matches = list(WORD_SPLIT.finditer(text))
        by_start = {m.start(): i for i, m in enumerate(matches)}
        by_end = {m.end(): i + 1 for i, m in enumerate(matches)}
        result.append([
            (by_start[e["start"]], by_end[e["end"]], e["label"], e["score"], tuple(e["generated_labels"]) if "generated_labels" in e else None)
            for e in entities
        ])
    return result


def threshold_selecting(extractor, texts, labels, count):
    """A threshold that about ``count`` spans pass (each is given to the decoder): the random
    replica scores nearly every span just under 0.5, so a fixed threshold would select hundreds."""
    from spacy_gliner.inference.entities import DecodeSettings

    generation, extractor.generation = extractor.generation, None  # scores only
    try:
        found = extractor.extract([split_words(t) for t in texts], labels, DecodeSettings(threshold=0.0, nested=True))
    finally:
        extractor.generation = generation
    scores = sorted((s.score for doc in found for s in doc), reverse=True)
    return separating_threshold(scores, count / len(scores))


def our_generation(extractor, texts, labels, flat, threshold):
    from spacy_gliner.inference.entities import DecodeSettings

    found = extractor.extract([split_words(t) for t in texts], labels, DecodeSettings(threshold=threshold, nested=not flat))
    return [[(s.start, s.end, labels[s.label], s.score, s.generated) for s in doc] for doc in found]


def assert_same_generation(expected, ours):
    assert sum(map(len, expected)) > 0, "the comparison must cover real predictions"
    assert len(expected) == len(ours)
    for ref_doc, our_doc in zip(expected, ours):
        ref_doc, our_doc = sorted(ref_doc, key=lambda s: s[:3]), sorted(our_doc, key=lambda s: s[:3])
        assert [s[:3] for s in our_doc] == [s[:3] for s in ref_doc]
        assert [s[4] for s in our_doc] == [s[4] for s in ref_doc]
        for ref_span, our_span in zip(ref_doc, our_doc):
            assert our_span[3] == pytest.approx(ref_span[3], abs=SCORE_TOLERANCE)


def test_replica_is_a_decoder_checkpoint_in_hub_layout(decoder_hub_id):
    from zoo.hub import hub_cache_dir, revision_for

    org, name = decoder_hub_id.split("/")
    snapshot = hub_cache_dir() / f"models--{org}--{name}" / "snapshots" / revision_for(decoder_hub_id)
    config = json.loads((snapshot / "gliner_config.json").read_text())
    assert config["labels_decoder"] and config["decoder_mode"] == "span"
    assert config["labels_decoder_config"]["n_embd"] != config["hidden_size"]  # the projection is exercised
    decoder_tokenizer = json.loads((snapshot / "decoder_tokenizer" / "tokenizer.json").read_text())
    eos = decoder_tokenizer["model"]["vocab"]["<|endoftext|>"]
    assert 0 <= eos < config["labels_decoder_config"]["vocab_size"]


@pytest.mark.parametrize(
    "flat,num_sequences,constraints",
    [(True, 1, None), (False, 1, None), (True, 2, CONSTRAINTS), (False, 3, None)],
    ids=["flat-greedy", "nested-greedy", "flat-constrained-2", "nested-beam-3"],
)
def test_spans_scores_and_generated_labels_match_reference(reference, extractor, flat, num_sequences, constraints):
    threshold = threshold_selecting(extractor, TEXTS, LABELS, 40)
    options = dict(num_gen_sequences=num_sequences, gen_constraints=constraints)
    expected = reference_generation(reference, TEXTS, LABELS, flat, threshold, **options)
    extractor.set_generation(num_sequences, constraints)
    try:
        ours = our_generation(extractor, TEXTS, LABELS, flat, threshold)
    finally:
        extractor.set_generation()
    assert_same_generation(expected, ours)
    assert all(len(s[4]) == num_sequences for doc in ours for s in doc)
    if constraints:
        assert {text.strip() for doc in ours for s in doc for text in s[4]} <= set(CONSTRAINTS)


def test_saved_decoder_checkpoint_loads_strictly_here_and_in_the_reference(extractor, tmp_path):
    from gliner import GLiNER
    from spacy_gliner.inference.entities import EntityExtractor
    from spacy_gliner.modeling.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(extractor.checkpoint, tmp_path / "saved")
    assert (tmp_path / "saved" / "decoder_tokenizer" / "tokenizer_config.json").exists()
    reloaded = EntityExtractor(load_checkpoint(tmp_path / "saved"), batch_size=4)
    texts = TEXTS[:2]
    threshold = threshold_selecting(extractor, texts, LABELS, 20)
    before = our_generation(extractor, texts, LABELS, True, threshold)
    assert our_generation(reloaded, texts, LABELS, True, threshold) == before
    reference = GLiNER.from_pretrained(str(tmp_path / "saved"))
    reference.eval()
    assert_same_generation(reference_generation(reference, texts, LABELS, True, threshold), before)


@pytest.mark.parametrize("constraints", [[], ["  ", "band"], "band"], ids=["empty", "whitespace", "a-string"])
def test_unusable_constraints_are_refused_by_name(extractor, constraints):
    from spacy_gliner.modeling.label_decoder import LabelConstraintError

    with pytest.raises(LabelConstraintError, match="gen_constraints"):
        extractor.set_generation(1, constraints)


def test_generated_length_is_bounded(extractor):
    """Greedy labels cut at 2 tokens begin the unbounded ones (15 tokens) and are shorter."""
    threshold = threshold_selecting(extractor, TEXTS[:1], LABELS, 10)
    full = our_generation(extractor, TEXTS[:1], LABELS, True, threshold)
    extractor.set_generation(1, None, max_new_tokens=2)
    try:
        cut = our_generation(extractor, TEXTS[:1], LABELS, True, threshold)
    finally:
        extractor.set_generation()
    assert [s[:3] for s in cut[0]] == [s[:3] for s in full[0]] and cut[0]
    for bounded, unbounded in zip(cut[0], full[0]):
        assert unbounded[4][0].startswith(bounded[4][0])
    assert any(len(s[4][0]) < len(f[4][0]) for s, f in zip(cut[0], full[0]))


@pytest.mark.parametrize(
    "change,message",
    [
        ({"decoder_mode": "prompt"}, "decoder_mode is 'prompt'.*fails in the reference"),
        ({"decoder_mode": None}, "decoder_mode is None"),
        ({"labels_decoder_config": None}, "labels_decoder_config"),
        ({"labels_decoder": None, "span_mode": "token_level", "represent_spans": True}, "represent_spans"),
    ],
    ids=["prompt-mode", "no-mode", "no-decoder-config", "span-representations-without-decoder"],
)
def test_decoder_variants_that_cannot_run_are_refused(decoder_hub_id, change, message):
    from huggingface_hub import try_to_load_from_cache

    from spacy_gliner.modeling.config import GlinerConfig, UnsupportedCheckpointError

    config = json.loads(Path(try_to_load_from_cache(decoder_hub_id, "gliner_config.json")).read_text())
    assert GlinerConfig.from_dict(config).has_label_decoder
    with pytest.raises(UnsupportedCheckpointError, match=message):
        GlinerConfig.from_dict({**config, **change})
