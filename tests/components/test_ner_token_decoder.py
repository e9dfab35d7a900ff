"""gliner_ner on the token form of the generative label decoder (UniEncoderTokenDecoder replica,
tests/zoo/families.py): the same settings and the same ``generated_labels`` attrs as the span
form, the reference's output, and a pipeline byte round trip."""
import pytest
import spacy
from spacy.tokens import Doc

from components.test_ner_decoder import annotations, docs_of
from modeling.test_label_decoder import reference_generation
from modeling.test_token_decoder import CONSTRAINTS, LABELS, TEXTS, THRESHOLD


@pytest.fixture(scope="module")
def token_decoder_hub_id(hub_families):
    return hub_families("token_decoder")


def token_decoder_nlp(hub_id, **settings):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": hub_id, "labels": LABELS, "threshold": THRESHOLD,
                                       "batch_size": len(TEXTS), "nested": True, **settings})
    return nlp


@pytest.fixture(scope="module")
def prompt_nlp(token_decoder_hub_id):
    return token_decoder_nlp(token_decoder_hub_id, decoder_mode="prompt", gen_constraints=CONSTRAINTS)


def test_span_mode_gives_the_references_spans_and_generated_labels(token_decoder_hub_id):
    from gliner import GLiNER

    nlp = token_decoder_nlp(token_decoder_hub_id, gen_constraints=CONSTRAINTS, num_gen_sequences=2)
    docs = list(nlp.pipe(docs_of(nlp, TEXTS)))
    reference = GLiNER.from_pretrained(token_decoder_hub_id)
    reference.eval()
    expected = reference_generation(reference, TEXTS, LABELS, False, THRESHOLD, batch_size=len(TEXTS),
                                    gen_constraints=CONSTRAINTS, num_gen_sequences=2)
    ours = [annotations(doc) for doc in docs]
    assert sum(map(len, ours)) > 0
    assert ours == [sorted((s, e, label, tuple(g.strip() for g in gen)) for s, e, label, _, gen in doc) for doc in expected]


def test_prompt_mode_names_spans_with_generated_labels_and_survives_to_bytes(prompt_nlp, token_decoder_hub_id):
    docs = list(prompt_nlp.pipe(docs_of(prompt_nlp, TEXTS)))
    found = [annotations(doc) for doc in docs]
    assert any(found)
    for start, end, label, generated in (span for doc in found for span in doc):
        assert label == generated[0] and label in CONSTRAINTS
    assert [annotations(Doc(prompt_nlp.vocab).from_bytes(doc.to_bytes())) for doc in docs] == found
    restored = spacy.blank("en")
    restored.add_pipe("gliner_ner", config={"model": token_decoder_hub_id, "labels": LABELS})
    restored.from_bytes(prompt_nlp.to_bytes())
    pipe = restored.get_pipe("gliner_ner")
    assert pipe.cfg["gen_constraints"] == CONSTRAINTS and pipe.extractor.config.is_token_decoder
    assert [annotations(doc) for doc in restored.pipe(docs_of(restored, TEXTS))] == found
