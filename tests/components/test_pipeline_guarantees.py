"""Hostile-input guarantees of the gliner components: pipelines pickle and run in spawned
workers, failed calls change nothing, re-running a doc is idempotent, prompt tokens are refused early with the label named, relations
follow retokenization (broken checkpoint files: tests/modeling/test_checkpoint.py)."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, Span, SpanGroup

import spacy_gliner.components.linker  # noqa: F401  (registers the factories)
import spacy_gliner.components.ner  # noqa: F401
import spacy_gliner.components.relex  # noqa: F401
from support import crossner_labels, crossner_sentences
from components.test_linker import ENTITIES, write_kb
from components.test_linker import model_dir as linker_model_dir  # noqa: F401  (fixture)
from components.test_relex import ENTITY_LABELS, relex_models  # noqa: F401  (fixture)

LABELS = crossner_labels("politics")[:6]
RELATIONS = ["works for", "born in", "located in"]
TEXTS = crossner_sentences("politics", 4)
# Random relex heads score every span near 0.5: caps keep the relation stage small and fast.
RELEX_SETTINGS = {"threshold": 0.5, "relation_threshold": 0.3, "max_entities": 20, "max_pairs": 100}
pytestmark = pytest.mark.filterwarnings("ignore:gliner_relex")


def conll04_texts(limit=3):
    from support import DATA

    data = json.loads((DATA / "conll04" / "conll04_test.json").read_text())
    return [" ".join(d["tokens"]) for d in data if d.get("relations") and 10 <= len(d["tokens"]) <= 30][:limit]


def ner_nlp(checkpoint, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoint), "labels": LABELS, **config})
    return nlp


def relex_nlp(checkpoint, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_relex", config={"model": str(checkpoint), "labels": ENTITY_LABELS, "relations": RELATIONS, **config})
    return nlp


def annotations(doc):
    """Everything the gliner components write on a doc, comparable across processes."""
    groups = {key: ([(s.start, s.end, s.label_) for s in group], group.attrs.get("scores")) for key, group in doc.spans.items()}
    candidates = [(e.start, e.end, e.kb_id_, e._.gliner_candidates) for e in doc.ents]
    relations = [(r.head.start, r.head.end, r.tail.start, r.tail.end, r.label, r.score) for r in doc._.relations]
    return [(e.start, e.end, e.label_) for e in doc.ents], groups, candidates, relations


# -- 2. pickling and spawned workers --------------------------------------------------------------


@pytest.fixture(scope="module")
def kb_file(tmp_path_factory):
    return write_kb(tmp_path_factory.mktemp("kb") / "kb.jsonl", ENTITIES)


@pytest.fixture(scope="module")
def full_nlp(checkpoints, relex_models, linker_model_dir, kb_file):
    """All three components in one pipeline, each entity writer on its own span key."""
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_sharp")), "labels": LABELS, "spans_key": "ner"})
    nlp.add_pipe("gliner_relex", config={"model": str(relex_models["mlp"][1]), "labels": ENTITY_LABELS,
                                         "relations": RELATIONS, "spans_key": "relex", **RELEX_SETTINGS})
    nlp.add_pipe("gliner_linker", config={"model": str(linker_model_dir), "kb": str(kb_file), "threshold": 0.0})
    return nlp


def test_pipeline_with_every_component_pickles_before_and_after_loading(full_nlp):
    fresh = pickle.loads(pickle.dumps(full_nlp))  # nothing loaded yet: only settings travel
    assert fresh.pipe_names == full_nlp.pipe_names
    texts = conll04_texts()
    expected = [annotations(doc) for doc in full_nlp.pipe(texts)]
    assert any(doc[2] for doc in expected), "the linker must have linked something"
    assert any(doc[3] for doc in expected), "relex must have found relations"
    assert [annotations(doc) for doc in fresh.pipe(texts)] == expected
    loaded = pickle.loads(pickle.dumps(full_nlp))  # models loaded: they travel too
    assert [annotations(doc) for doc in loaded.pipe(texts)] == expected


SPAWN_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, sys
    import spacy

    def build(ner, relex, linker, kb, labels, entity_labels, relations, relex_settings):
        nlp = spacy.blank("en")
        nlp.add_pipe("gliner_ner", config={"model": ner, "labels": labels, "spans_key": "ner"})
        nlp.add_pipe("gliner_relex", config={"model": relex, "labels": entity_labels, "relations": relations,
                                             "spans_key": "relex", **relex_settings})
        nlp.add_pipe("gliner_linker", config={"model": linker, "kb": kb, "threshold": 0.0})
        return nlp

    def annotations(doc):
        groups = {k: ([(s.start, s.end, s.label_) for s in g], g.attrs.get("scores")) for k, g in doc.spans.items()}
        links = [(e.start, e.end, e.kb_id_, e._.gliner_candidates) for e in doc.ents]
        rels = [(r.head.start, r.head.end, r.tail.start, r.tail.end, r.label, r.score) for r in doc._.relations]
        return [[(e.start, e.end, e.label_) for e in doc.ents], groups, links, rels]

    if __name__ == "__main__":
        multiprocessing.set_start_method("spawn")
        args = json.loads(sys.argv[1])
        nlp = build(**args["pipeline"])
        single = [annotations(d) for d in nlp.pipe(args["texts"], batch_size=2)]
        spawned = [annotations(d) for d in nlp.pipe(args["texts"], batch_size=2, n_process=2)]
        print(json.dumps({"single": single, "spawned": spawned, "method": multiprocessing.get_start_method()}))
    """
)


def test_n_process_2_under_spawn_gives_the_single_process_output(checkpoints, relex_models, linker_model_dir, kb_file, tmp_path):
    script = tmp_path / "spawned_pipe.py"
    script.write_text(SPAWN_SCRIPT)
    args = {
        "pipeline": {"ner": str(checkpoints("uni_sharp")), "relex": str(relex_models["mlp"][1]), "linker": str(linker_model_dir),
                     "kb": str(kb_file), "labels": LABELS, "entity_labels": ENTITY_LABELS, "relations": RELATIONS, "relex_settings": RELEX_SETTINGS},
        "texts": conll04_texts(),
    }
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(script), json.dumps(args)], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["method"] == "spawn"
    assert any(doc[2] for doc in result["single"]) and any(doc[3] for doc in result["single"])
    assert result["spawned"] == result["single"]


# -- 4. span groups: idempotent re-runs, users' groups never merged into ----------------------------


def test_running_a_doc_again_replaces_our_group_instead_of_appending(checkpoints):
    nlp = ner_nlp(checkpoints("uni_sharp"))
    doc = nlp(TEXTS[0])
    first = [(s.start, s.end, s.label_) for s in doc.spans["sc"]], list(doc.spans["sc"].attrs["scores"]), list(doc.ents)
    assert first[0]
    doc = nlp(nlp(doc))
    assert ([(s.start, s.end, s.label_) for s in doc.spans["sc"]], list(doc.spans["sc"].attrs["scores"]), list(doc.ents)) == first
    # Recognised as ours after a round trip through bytes too (the marker is in the group's attrs).
    restored = nlp(Doc(nlp.vocab).from_bytes(doc.to_bytes()))
    assert [(s.start, s.end, s.label_) for s in restored.spans["sc"]] == first[0]


def test_relex_rerun_is_idempotent(relex_models):
    nlp = relex_nlp(relex_models["mlp"][1], **RELEX_SETTINGS)
    doc = nlp(conll04_texts(1)[0])
    first = annotations(doc)
    assert first[1]["sc"][0]
    assert annotations(nlp(doc)) == first


def test_a_users_group_under_our_key_is_kept_whole_or_replaced_on_request(checkpoints):
    def users_doc(nlp):
        doc = nlp.make_doc(TEXTS[0])
        group = SpanGroup(doc, name="sc", spans=[Span(doc, 0, 1, label="USER"), Span(doc, 2, 4, label="USER")])
        group.attrs["scores"] = [0.9, 0.8]
        group.attrs["annotator"] = "alice"
        doc.spans["sc"] = group
        return doc

    nlp = ner_nlp(checkpoints("uni_sharp"))
    doc = users_doc(nlp)
    with pytest.raises(ValueError, match=r"doc.spans\['sc'\].*'spans_key'.*'overwrite_ents'"):
        nlp(doc)
    group = doc.spans["sc"]
    assert [(s.start, s.end, s.label_) for s in group] == [(0, 1, "USER"), (2, 4, "USER")]
    assert group.attrs == {"scores": [0.9, 0.8], "annotator": "alice"}
    assert not doc.ents
    # Another key leaves the user's group alone; overwrite_ents replaces it, as it replaces ents.
    doc = ner_nlp(checkpoints("uni_sharp"), spans_key="gliner")(users_doc(nlp))
    assert doc.spans["sc"].attrs["annotator"] == "alice" and len(doc.spans["gliner"]) > 0
    doc = ner_nlp(checkpoints("uni_sharp"), overwrite_ents=True)(users_doc(nlp))
    assert "USER" not in {s.label_ for s in doc.spans["sc"]} and "annotator" not in doc.spans["sc"].attrs


# -- 1. prompt and special tokens inside labels ----------------------------------------------------


@pytest.mark.parametrize("labels, token", [
    (["person", "foo <<ENT>> bar", "city"], "<<ENT>>"),
    (["<<ENT>>"], "<<ENT>>"),
    (["person <<SEP>>"], "<<SEP>>"),
    (["[FLERT] city"], "[FLERT]"),
    (["person", "city [SEP]"], "[SEP]"),
    ({"person": "a human [CLS] being"}, "[CLS]"),
])
def test_special_tokens_in_labels_fail_at_add_pipe(checkpoints, labels, token):
    with pytest.raises(ValueError, match=r"label .* contains '" + __import__("re").escape(token) + "'"):
        ner_nlp(checkpoints("uni_markerV0"), labels=labels)


def test_special_tokens_in_labels_fail_at_initialize_and_add_labels_changing_nothing(checkpoints):
    nlp = ner_nlp(checkpoints("uni_markerV0"))
    pipe = nlp.get_pipe("gliner_ner")
    with pytest.raises(ValueError, match="'<<ENT>>'"):
        pipe.initialize(labels=["person", "foo <<ENT>> bar", "city"])
    with pytest.raises(ValueError, match="'<<ENT>>'"):
        pipe.add_labels(["country", "<<ENT>>"])
    with pytest.raises(ValueError, match="'<<SEP>>'"):
        pipe.add_label("x", "a <<SEP>> b")
    assert list(pipe.labels) == LABELS and pipe.label_texts == LABELS


def test_relation_holding_the_relation_token_fails_at_add_pipe_and_initialize(relex_models):
    with pytest.raises(ValueError, match="'<<REL>>'"):
        relex_nlp(relex_models["mlp"][1], relations=["works for", "<<REL>>", "born in"])
    pipe = relex_nlp(relex_models["mlp"][1]).get_pipe("gliner_relex")
    with pytest.raises(ValueError, match="'<<REL>>'"):
        pipe.initialize(relations=["works for", "x <<REL>> y"])
    assert list(pipe.relation_labels) == RELATIONS


def test_hub_checkpoint_labels_are_checked_at_first_load(checkpoints, monkeypatch):
    """A hub id is not read at add_pipe; the check happens when the tokenizer is first known."""
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("gliner_ner", config={"model": "org/some-gliner", "labels": ["person", "a <<ENT>> b"]})
    monkeypatch.setattr("spacy_gliner.modeling.checkpoint.resolve_checkpoint_dir", lambda _: checkpoints("uni_markerV0"))
    with pytest.raises(ValueError, match="'<<ENT>>'"):
        nlp("Barack Obama visited Paris.")
    assert pipe._extractor is None


def test_bi_encoder_label_tower_special_tokens_change_the_label_and_are_refused(checkpoints):
    """[SEP] in a bi-encoder label is read as a sequence boundary, not as text: the label tower
    sees other ids than for the same characters in plain text, so the label is refused."""
    from spacy_gliner.modeling.checkpoint import open_tokenizers, read_config

    directory = checkpoints("bi_span")
    _, label_tokenizer = open_tokenizers(directory, read_config(directory))
    ids = label_tokenizer("city [SEP] town", add_special_tokens=False)["input_ids"]
    assert label_tokenizer.sep_token_id in ids, "the label tokenizer parses [SEP] as its boundary token"
    with pytest.raises(ValueError, match="'\\[SEP\\]', a special token of the label tokenizer"):
        ner_nlp(directory, labels=["person", "city [SEP] town"])
    # The text tower's prompt tokens never reach the label tower: harmless there, so accepted.
    assert ner_nlp(directory, labels=["person", "a <<ENT>> b"]).get_pipe("gliner_ner").labels == ("person", "a <<ENT>> b")


def test_labels_an_uncased_tokenizer_cannot_tell_apart_are_named_in_a_warning(checkpoints):
    with pytest.warns(UserWarning, match="cannot tell apart.*'Person' / 'person' / 'PERSON'"):
        ner_nlp(checkpoints("uni_markerV0"), labels=["Person", "person", "PERSON", "city"])


# -- 3. a failed initialize / add_labels changes nothing --------------------------------------------


def test_failed_ner_initialize_keeps_the_previous_labels(checkpoints):
    nlp = ner_nlp(checkpoints("uni_markerV0"))
    pipe = nlp.get_pipe("gliner_ner")
    before = [[(s.start, s.end, s.label_) for s in doc.spans["sc"]] for doc in nlp.pipe(TEXTS[:2])]
    with pytest.raises(ValueError, match="subwords but at most"):
        pipe.initialize(labels=["person", "word " * 600])
    with pytest.raises(ValueError, match="subwords but at most"):
        pipe.add_labels(["country", "word " * 600])
    assert list(pipe.labels) == LABELS
    assert [[(s.start, s.end, s.label_) for s in doc.spans["sc"]] for doc in nlp.pipe(TEXTS[:2])] == before


def test_failed_relex_initialize_keeps_labels_and_relations(relex_models):
    nlp = relex_nlp(relex_models["mlp"][1], **RELEX_SETTINGS)
    pipe = nlp.get_pipe("gliner_relex")
    text = conll04_texts(1)[0]
    before = annotations(nlp(text))
    with pytest.raises(ValueError, match="collides"):
        pipe.initialize(labels=["works for"])
    assert list(pipe.labels) == ENTITY_LABELS and list(pipe.relation_labels) == RELATIONS
    after = annotations(nlp(text))
    assert "works for" not in {label for _, _, label in after[0]}
    assert after == before


# -- 5. relations follow retokenization after gliner_relex ----------------------------------------


@spacy.Language.component("toy_noun_chunk_parse")
def toy_noun_chunk_parse(doc):
    """A stand-in parse that gives merge_noun_chunks something to merge without a trained parser:
    each run of capitalised words is a noun chunk (compounds headed by its last word)."""
    heads, deps, pos, run = list(range(len(doc))), ["ROOT"] * len(doc), ["VERB"] * len(doc), []
    for token in list(doc) + [None]:
        if token is not None and token.text[:1].isupper():
            run.append(token.i)
            continue
        for i in run:
            heads[i], deps[i], pos[i] = run[-1], "compound" if i != run[-1] else "nsubj", "PROPN"
        if run:
            heads[run[-1]] = run[-1] + 1 if run[-1] + 1 < len(doc) else run[-1]
        run = []
    for token in doc:
        token.head, token.dep_, token.pos_ = doc[heads[token.i]], deps[token.i], pos[token.i]
    return doc


def relation_chars(doc):
    return [((r.head.start_char, r.head.end_char), r.label, (r.tail.start_char, r.tail.end_char), r.score)
            for r in doc._.relations]


def test_relations_follow_merge_entities_after_relex(relex_models):
    nlp = relex_nlp(relex_models["mlp"][1], **RELEX_SETTINGS)
    texts = conll04_texts()
    plain = [relation_chars(doc) for doc in nlp.pipe(texts)]
    assert any(plain), "relex must have found relations"
    nlp.add_pipe("merge_entities")
    for text, expected, doc in zip(texts, plain, nlp.pipe(texts)):
        assert len(doc) < len(nlp.make_doc(text)), "merge_entities must have merged something"
        assert relation_chars(doc) == expected
        for relation in doc._.relations:
            # each argument is one merged entity token now, labelled as that entity
            assert len(relation.head) == 1 and relation.head.label_ == relation.head[0].ent_type_
        # spaCy's retokenizer does not renumber span groups (spancat's neither): our stale group
        # would make to_bytes raise E035, so it is dropped; the relations do not depend on it.
        del doc.spans["sc"]
        restored = Doc(nlp.vocab).from_bytes(doc.to_bytes())
        assert relation_chars(restored) == expected


def test_relations_follow_merge_noun_chunks_after_relex(relex_models):
    nlp = relex_nlp(relex_models["mlp"][1], **RELEX_SETTINGS)
    texts = conll04_texts()
    plain = [relation_chars(doc) for doc in nlp.pipe(texts)]
    nlp.add_pipe("toy_noun_chunk_parse")
    nlp.add_pipe("merge_noun_chunks")
    merged = list(nlp.pipe(texts))
    assert any(len(doc) < len(nlp.make_doc(text)) for text, doc in zip(texts, merged))
    for expected, doc in zip(plain, merged):
        got = relation_chars(doc)
        assert len(got) <= len(expected) and {(r[1]) for r in got} <= {r[1] for r in expected}
        # Each argument now covers whole merged tokens and contains its original characters.
        for (head, label, tail, score) in expected:
            new_head = doc.char_span(*head, alignment_mode="expand")
            new_tail = doc.char_span(*tail, alignment_mode="expand")
            assert ((new_head.start_char, new_head.end_char), label, (new_tail.start_char, new_tail.end_char)) in {
                r[:3] for r in got}
        for relation in doc._.relations:
            assert relation.head.doc is doc and 0 <= relation.head.start < relation.head.end <= len(doc)


# -- 6. prompt tokens written in the document text (found by tests/components/test_properties.py) -----------


def test_prompt_markers_in_the_text_are_not_taken_for_prompt_classes():
    import torch

    from spacy_gliner.modeling.encoders import gather_prompt_vectors

    marker = 9
    # prompt: <m> a <m> b <sep> | text: x <m> y  (the second row is padded and has no text marker)
    ids = torch.tensor([[marker, 1, marker, 2, 3, 4, marker, 5], [marker, 1, marker, 2, 3, 4, 0, 0]])
    mask = torch.tensor([[1] * 8, [1] * 6 + [0] * 2])
    tokens = torch.arange(16, dtype=torch.float).view(2, 8, 1).expand(2, 8, 2).contiguous()
    vectors, valid = gather_prompt_vectors(tokens, ids, mask, marker, use_marker=True, count=2)
    assert vectors[:, :, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]] and valid.all()


def test_relex_on_text_holding_the_relation_marker(relex_models):
    """'<<REL>>' in a document was read as one more relation prompt: IndexError in the relation head."""
    nlp = relex_nlp(relex_models["mlp"][1], **RELEX_SETTINGS)
    text = "John Smith John Smith John Smith John Smith<<REL>>John Smith "
    doc = nlp(text)
    for relation in doc._.relations:
        assert 0 <= relation.head.start < relation.head.end <= len(doc) and relation.label in RELATIONS
    assert len(doc.ents) > 0, "the entities around the marker are still found"
