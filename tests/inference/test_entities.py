"""gliner_ner gives the reference package's spans, labels and scores on the same checkpoint."""
import pytest
import spacy

from support import FAMILIES, assert_same, crossner_labels, crossner_sentences, our_spans, reference_spans


PARITY_LABELS = crossner_labels("AI")[:5] + ["musical artist"]


@pytest.fixture(scope="module")
def pipelines(checkpoints):
    built = {}

    def get(family):
        if family not in built:
            nlp = spacy.blank("en")
            nlp.add_pipe("gliner_ner", config={"model": str(checkpoints(family)), "labels": PARITY_LABELS, "batch_size": 4})
            built[family] = nlp
        return built[family]

    return get


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("threshold", [0.5, 0.3])
@pytest.mark.parametrize("nested", [False, True])
def test_parity_with_reference(family, threshold, nested, pipelines, reference_models):
    texts = crossner_sentences("AI", 4) + crossner_sentences("music", 4)
    nlp = pipelines(family)
    nlp.get_pipe("gliner_ner").cfg.update(threshold=threshold, nested=nested)
    reference = reference_spans(reference_models(family), texts, PARITY_LABELS, not nested, threshold)
    assert_same(reference, our_spans(nlp, texts))


@pytest.mark.parametrize("family", ["uni_markerV0", "bi_span"])
def test_parity_with_label_descriptions(family, checkpoints, reference_models):
    """The model reads the description; the span carries the label name."""
    labels = {"algo": "machine learning algorithm", "org": "organization", "person": "researcher or person"}
    texts = crossner_sentences("AI", 8)
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints(family)), "labels": labels, "threshold": 0.5})
    ours = our_spans(nlp, texts)
    assert {s[2] for doc in ours for s in doc} <= set(labels)
    assert_same(reference_spans(reference_models(family), texts, labels, True, 0.5), ours)


def test_multi_label_parity(checkpoints, reference_models):
    texts = crossner_sentences("politics", 6)
    labels = crossner_labels("politics")[:6]
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_markerV0")), "labels": labels, "multi_label": True})
    outputs = reference_models("uni_markerV0").inference(texts, labels, flat_ner=True, threshold=0.5, multi_label=True)
    ours = our_spans(nlp, texts)
    assert [len(o) for o in ours] == [len(r) for r in outputs]
    assert any(len({(s[0], s[1]) for s in doc}) < len(doc) for doc in ours), "some span must carry several labels"
