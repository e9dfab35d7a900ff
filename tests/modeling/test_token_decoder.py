"""The token form of the generative label decoder (UniEncoderTokenDecoder): strict loading and
inference give the reference's spans, scores and generated labels (gliner 0.2.29
``inference(..., gen_constraints=..., num_gen_sequences=k)``, greedy: ``do_sample=False``), flat
and nested, with and without constraints, on a replica built by the reference on the real MiniLM
encoder and the tiny GPT-2 decoder of the span form (tests/zoo/families.py, whose score spreading
makes thresholds select some spans).

The reference's token form finds spans from the token scores at the threshold, scores them with
its span layer, hands those whose best probability exceeds 0.5 to the decoder, and keeps every
(span, label) above the threshold. All texts go in one batch on both sides: the decoder prefixes
depend on the batch (its padding and its table of kept spans).
"""
import json

import pytest

from modeling.test_label_decoder import assert_same_generation, reference_generation
from support import crossner_labels, crossner_sentences, split_words

LABELS = crossner_labels("music")[:4]
TEXTS = crossner_sentences("music", 8)
CONSTRAINTS = ["band", "song", "country"]
THRESHOLD = 0.6


@pytest.fixture(scope="module")
def token_decoder_hub_id(hub_families):
    return hub_families("token_decoder")


@pytest.fixture(scope="module")
def reference(token_decoder_hub_id):
    from gliner import GLiNER

    model = GLiNER.from_pretrained(token_decoder_hub_id)
    model.eval()
    return model


@pytest.fixture(scope="module")
def extractor(token_decoder_hub_id):
    from spacy_gliner.inference.entities import EntityExtractor
    from spacy_gliner.modeling.checkpoint import load_checkpoint

    return EntityExtractor(load_checkpoint(token_decoder_hub_id), batch_size=len(TEXTS))


def our_generation(extractor, texts, flat, threshold):
    from spacy_gliner.inference.entities import DecodeSettings

    found = extractor.extract([split_words(t) for t in texts], LABELS, DecodeSettings(threshold=threshold, nested=not flat))
    return [[(s.start, s.end, LABELS[s.label], s.score, s.generated) for s in doc] for doc in found]


def test_replica_is_a_token_decoder_checkpoint(token_decoder_hub_id, extractor):
    from huggingface_hub import try_to_load_from_cache

    config = json.loads(open(try_to_load_from_cache(token_decoder_hub_id, "gliner_config.json")).read())
    assert config["labels_decoder"] and config["span_mode"] == "token_level" and config["represent_spans"]
    assert config["labels_decoder_config"]["n_embd"] != config["hidden_size"]  # the projection is exercised
    assert extractor.config.is_token_decoder


def test_thresholds_sit_far_from_every_score(extractor, monkeypatch):
    """THRESHOLD and the decoder's fixed 0.5 cut are at least 1e-4 from every token and span
    probability of these texts, so float noise between machines cannot move a span across them
    (when the replica changes, pick another THRESHOLD)."""
    import torch

    from spacy_gliner.inference.entities import DecodeSettings

    model, seen = extractor.model, []

    def recording(method, logits_of):
        def run(*args, **kwargs):
            out = method(*args, **kwargs)
            seen.append(torch.sigmoid(logits_of(out).float()).flatten())
            return out
        return run

    monkeypatch.setattr(model, "score", recording(model.score, lambda out: out))
    monkeypatch.setattr(model, "score_token_spans", recording(model.score_token_spans, lambda out: out[0]))
    extractor.extract([split_words(t) for t in TEXTS], LABELS, DecodeSettings(threshold=THRESHOLD, nested=True))
    probabilities = torch.cat(seen)
    assert float((probabilities - THRESHOLD).abs().min()) > 1e-4
    assert float((probabilities - 0.5).abs().min()) > 1e-4


@pytest.mark.parametrize(
    "flat,num_sequences,constraints",
    [(True, 1, None), (False, 1, None), (True, 2, CONSTRAINTS), (False, 3, None)],
    ids=["flat-greedy", "nested-greedy", "flat-constrained-2", "nested-beam-3"],
)
def test_spans_scores_and_generated_labels_match_reference(reference, extractor, flat, num_sequences, constraints):
    options = dict(num_gen_sequences=num_sequences, gen_constraints=constraints)
    expected = reference_generation(reference, TEXTS, LABELS, flat, THRESHOLD, batch_size=len(TEXTS), **options)
    extractor.set_generation(num_sequences, constraints)
    try:
        ours = our_generation(extractor, TEXTS, flat, THRESHOLD)
    finally:
        extractor.set_generation()
    assert_same_generation(expected, ours)
    written = [s[4] for doc in ours for s in doc]
    # above 0.5 every candidate passed the decoder's fixed cut and carries its labels
    assert all(labels is not None and len(labels) == num_sequences for labels in written)
    if constraints:
        assert {text.strip() for labels in written for text in labels} <= set(CONSTRAINTS)


def test_saved_token_decoder_checkpoint_loads_strictly_here_and_in_the_reference(extractor, tmp_path):
    from gliner import GLiNER
    from spacy_gliner.inference.entities import EntityExtractor
    from spacy_gliner.modeling.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(extractor.checkpoint, tmp_path / "saved")
    reloaded = EntityExtractor(load_checkpoint(tmp_path / "saved"), batch_size=len(TEXTS))
    before = our_generation(extractor, TEXTS, True, THRESHOLD)
    assert our_generation(reloaded, TEXTS, True, THRESHOLD) == before
    reference = GLiNER.from_pretrained(str(tmp_path / "saved"))
    reference.eval()
    assert type(reference).__name__ == "UniEncoderTokenDecoderGLiNER"
    assert_same_generation(reference_generation(reference, TEXTS, LABELS, True, THRESHOLD, batch_size=len(TEXTS)), before)
