"""Hostile-input guarantees of the gliner components: pipelines pickle and run in spawned
workers, failed calls change nothing, re-running a doc is idempotent, prompt tokens and broken
checkpoint files are refused early with the file, key or label named."""
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
from test_linker import ENTITIES, write_kb
from test_linker import model_dir as linker_model_dir  # noqa: F401  (fixture)
from test_relex_component import ENTITY_LABELS, relex_models  # noqa: F401  (fixture)

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
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(script), json.dumps(args)], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["method"] == "spawn"
    assert any(doc[2] for doc in result["single"]) and any(doc[3] for doc in result["single"])
    assert result["spawned"] == result["single"]
