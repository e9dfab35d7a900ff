"""gliner_ner gives the reference package's spans, labels and scores on the same checkpoint."""
import pytest
import spacy
from spacy.tokens import Doc

from support import FAMILIES, WORD_SPLIT, crossner_labels, crossner_sentences, split_words


def reference_spans(model, texts, labels, flat, threshold):
    """Reference predictions as (start word, end word exclusive, label, score) per text."""
    outputs = model.inference(texts, labels, flat_ner=flat, threshold=threshold, batch_size=4)
    result = []
    for text, entities in zip(texts, outputs):
        matches = list(WORD_SPLIT.finditer(text))
        by_start = {m.start(): i for i, m in enumerate(matches)}
        by_end = {m.end(): i for i, m in enumerate(matches)}
        result.append([(by_start[e["start"]], by_end[e["end"]] + 1, e["label"], e["score"]) for e in entities])
    return result


def our_spans(nlp, texts):
    docs = [Doc(nlp.vocab, words=split_words(t)) for t in texts]
    out = []
    for doc in nlp.pipe(docs):
        group = doc.spans["sc"]
        out.append([(s.start, s.end, s.label_, score) for s, score in zip(group, group.attrs["scores"])])
    return out


def assert_same(reference, ours):
    """Same spans and labels, scores within 1e-4; both sides ordered by (start, end, label)."""
    assert sum(map(len, reference)) > 0, "the comparison must cover real predictions"
    assert len(reference) == len(ours)
    for ref_doc, our_doc in zip(reference, ours):
        ref_doc, our_doc = sorted(ref_doc, key=lambda s: s[:3]), sorted(our_doc, key=lambda s: s[:3])
        assert [s[:3] for s in our_doc] == [s[:3] for s in ref_doc]
        for ref_span, our_span in zip(ref_doc, our_doc):
            assert our_span[3] == pytest.approx(ref_span[3], abs=1e-4)


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
