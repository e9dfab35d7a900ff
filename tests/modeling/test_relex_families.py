"""Relex checkpoint families, stored as the hub stores them, load by hub id through
``gliner_relex`` and give the reference's entities and relations under default settings."""
import pytest
import spacy
from spacy.tokens import Doc

from support import DATA, WORD_SPLIT, separating_threshold, split_words
from zoo.families import RELEX_FAMILIES

ENTITY_LABELS = ["person", "organization", "location", "other"]
RELATIONS = ["works for", "located in", "lives in", "killed by", "part of"]
SCORE_TOLERANCE = 1e-5


def conll04_texts(limit):
    import json

    rows = json.loads((DATA / "conll04" / "conll04_test.json").read_text())
    return [" ".join(row["tokens"]) for row in rows if 10 <= len(row["tokens"]) <= 35][:limit]


def reference_output(model, texts, threshold, relation_threshold):
    entities, relations = model.inference(texts, ENTITY_LABELS, relations=RELATIONS, threshold=threshold,
                                          relation_threshold=relation_threshold, flat_ner=True, batch_size=4)
    out = []
    for text, ents, rels in zip(texts, entities, relations):
        words = list(WORD_SPLIT.finditer(text))
        by_start = {m.start(): i for i, m in enumerate(words)}
        by_end = {m.end(): i + 1 for i, m in enumerate(words)}
        spans = [(by_start[e["start"]], by_end[e["end"]], e["label"], e["score"]) for e in ents]
        found = {(spans[r["head"]["entity_idx"]][:2], spans[r["tail"]["entity_idx"]][:2], r["relation"]): r["score"]
                 for r in rels}
        out.append((spans, found))
    return out


def our_output(nlp, texts):
    out = []
    for doc in nlp.pipe([Doc(nlp.vocab, words=split_words(t)) for t in texts]):
        group = doc.spans["sc"]
        spans = [(s.start, s.end, s.label_, score) for s, score in zip(group, group.attrs["scores"])]
        found = {((r.head.start, r.head.end), (r.tail.start, r.tail.end), r.label): r.score for r in doc._.relations}
        out.append((spans, found))
    return out


@pytest.mark.parametrize("name", list(RELEX_FAMILIES))
def test_relex_family_matches_reference(name, hub_families):
    from gliner import GLiNER

    hub_id = hub_families(name)
    reference = GLiNER.from_pretrained(hub_id)
    reference.eval()
    texts = conll04_texts(8)
    floor = reference_output(reference, texts, 0.0, 1.0)
    threshold = separating_threshold([s[3] for spans, _ in floor for s in spans], keep_fraction=0.3)
    loose = reference_output(reference, texts, threshold, 0.0)
    relation_threshold = separating_threshold([score for _, found in loose for score in found.values()], keep_fraction=0.3)
    expected = reference_output(reference, texts, threshold, relation_threshold)
    assert sum(len(found) for _, found in expected) > 0, "the comparison must cover relations"
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_relex", config={"model": hub_id, "labels": ENTITY_LABELS, "relations": RELATIONS,
                                         "threshold": threshold, "relation_threshold": relation_threshold})
    for (ref_spans, ref_found), (our_spans_, our_found) in zip(expected, our_output(nlp, texts)):
        assert sorted(s[:3] for s in our_spans_) == sorted(s[:3] for s in ref_spans)
        for ours, ref in zip(sorted(our_spans_), sorted(ref_spans)):
            assert ours[3] == pytest.approx(ref[3], abs=SCORE_TOLERANCE)
        assert set(our_found) == set(ref_found)
        for key, score in ref_found.items():
            assert our_found[key] == pytest.approx(score, abs=SCORE_TOLERANCE)
