"""A fresh virtualenv, as a user has one: ``pip install .`` alone is enough to load a DeBERTa-v3
GLiNER as the hub stores it (SentencePiece tokenizer files, no tokenizer.json): every package that
takes is declared; and a pipeline holding all three components, shipped with ``spacy package``,
installs as a wheel and loads by its package name offline with identical output. One virtualenv
serves both tests (building it is most of their time)."""
import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from components.test_linker import model_dir as linker_model_dir  # noqa: F401  (fixture)
from support import our_spans

REPO = Path(__file__).resolve().parents[1]
# Pinned only so that pip takes the CPU build of torch and the transformers this project is tested
# with; the install itself is the plain one a user runs.
CONSTRAINTS = "torch==2.13.0\ntransformers==4.53.2\n"

PROBE = """
import json, sys
import spacy
from spacy.tokens import Doc
nlp = spacy.blank("en")
nlp.add_pipe("gliner_ner", config={"model": sys.argv[1], "labels": ["person", "organization", "location"],
                                  "threshold": float(sys.argv[2]), "nested": True})
words = sys.argv[3].split()
doc = nlp(Doc(nlp.vocab, words=words))
group = doc.spans["sc"]
print(json.dumps([[s.start, s.end, s.label_, score] for s, score in zip(group, group.attrs["scores"])]))
"""


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory):
    """The python of a new virtualenv with this repository installed by a plain ``pip install``."""
    root = tmp_path_factory.mktemp("fresh")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    (root / "constraints.txt").write_text(CONSTRAINTS)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--constraint", str(root / "constraints.txt"), str(REPO)],
        capture_output=True, text=True, timeout=1200,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return python


@pytest.mark.slow
def test_pip_install_alone_loads_a_deberta_v3_hub_checkpoint(fresh_python, hub_families):
    hub_id = hub_families("gliner_v2_1")
    python = fresh_python
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True).stdout
    installed = {package["name"].lower() for package in json.loads(listed)}
    assert "spacy-gliner" in installed and {"sentencepiece", "protobuf"} <= installed
    assert "gliner" not in installed, "the reference package must not be a runtime dependency"
    text = "Tim Cook presented the new iPhone at Apple Park in Cupertino , California ."
    # Threshold below every random-weight score: the comparison covers every decoded span.
    probe = subprocess.run([str(python), "-c", PROBE, hub_id, "0.0", text], capture_output=True, text=True, timeout=600,
                           env=_offline_env())
    assert probe.returncode == 0, probe.stderr[-3000:]
    fresh = json.loads(probe.stdout.strip().splitlines()[-1])
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": hub_id, "labels": ["person", "organization", "location"],
                                      "threshold": 0.0, "nested": True})
    here = our_spans(nlp, [text])[0]
    assert len(fresh) > 0
    assert [tuple(s[:3]) for s in fresh] == [s[:3] for s in here]
    assert all(abs(a[3] - b[3]) < 1e-6 for a, b in zip(fresh, here))


def _offline_env():
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["HF_HUB_OFFLINE"] = "1"
    return env


# -- spacy package ---------------------------------------------------------------------------------

PACKAGE_NAME = "en_gliner_pipeline"
PACKAGE_VERSION = "0.0.1"
LINKER_TEXT = "Tim Cook presented the new iPhone at Apple Park in Cupertino ."
TEXTS = [
    "John Wilkes Booth , who assassinated President Lincoln , was an actor .",
    LINKER_TEXT,
    "The Boston Celtics beat the Los Angeles Lakers at Madison Square Garden in New York .",
]

OUTPUT = """
import json, sys
import spacy
from spacy.tokens import Doc
nlp = spacy.load(sys.argv[1])
out = []
for text in json.loads(sys.argv[2]):
    doc = nlp(Doc(nlp.vocab, words=text.split()))
    out.append({
        "ents": [[e.start, e.end, e.label_, e.kb_id_] for e in doc.ents],
        "spans": {key: [[s.start, s.end, s.label_, round(float(x), 5)] for s, x in zip(group, group.attrs.get("scores", []))]
                  for key, group in sorted(doc.spans.items())},
        "relations": [[r.head.start, r.head.end, r.tail.start, r.tail.end, r.label, round(r.score, 5)] for r in doc._.relations],
    })
print(json.dumps(out))
"""


def shipped_pipeline(directory: Path, checkpoints, linker_checkpoint: Path, kb_sqlite: Path, copy_kb: bool = True):
    """gliner_ner on a bi-encoder (its label vectors cached and saved), gliner_relex and gliner_linker
    over an SQLite KB, saved to ``directory``."""
    import spacy

    import spacy_gliner.components.linker  # noqa: F401  (registers the factories)
    import spacy_gliner.components.ner  # noqa: F401
    import spacy_gliner.components.relex  # noqa: F401

    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("bi_span")), "threshold": 0.0,
                                       "labels": ["person", "organization", "location"]})
    nlp.get_pipe("gliner_ner").add_labels({f"kind {i}": f"a kind of thing numbered {i}" for i in range(40)}, progress=False)
    nlp.add_pipe("gliner_relex", config={"model": str(relex_checkpoint(directory.parent)), "labels": ["Peop", "Org", "Loc"],
                                         "relations": ["Work_For", "Live_In", "Located_In"], "threshold": 0.3,
                                         "spans_key": "relex"})
    nlp.add_pipe("gliner_linker", config={"model": str(linker_checkpoint), "kb": str(kb_sqlite), "threshold": 0.0,
                                          "copy_kb": copy_kb})
    nlp.meta["name"], nlp.meta["version"] = PACKAGE_NAME.split("_", 1)[1], PACKAGE_VERSION  # spacy package prefixes the language
    nlp.to_disk(directory)
    return nlp


def relex_checkpoint(root: Path) -> Path:
    """A relex GLiNER on the real MiniLM encoder (seeded heads), saved by the reference package."""
    target = root / "relex_checkpoint"
    if not target.exists():
        import torch
        from gliner import GLiNER

        from support import minilm_dir

        torch.manual_seed(3)
        GLiNER.from_config(dict(model_name=minilm_dir(), max_width=12, span_mode="markerV0", hidden_size=256,
                                relations_layer="dot")).save_pretrained(str(target))
    return target


def package_wheel(pipeline: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "spacy", "package", str(pipeline), str(out), "--build", "wheel",
                           "--force"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    wheels = list(out.rglob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def kb_sqlite(tmp_path_factory):
    from components.test_linker import write_kb
    from spacy_gliner.kb.sqlite import SQLiteKB

    root = tmp_path_factory.mktemp("kb")
    db = root / "kb.sqlite"
    SQLiteKB.from_jsonl(write_kb(root / "kb.jsonl"), db).close()
    return db


@pytest.mark.slow
def test_spacy_package_wheel_loads_by_name_offline_with_identical_output(
        fresh_python, checkpoints, linker_model_dir, kb_sqlite, tmp_path):
    shipped_pipeline(tmp_path / "pipeline", checkpoints, linker_model_dir, kb_sqlite)
    assert (tmp_path / "pipeline" / "gliner_linker" / "kb" / "kb.sqlite").exists()  # copied: travels in the wheel
    wheel = package_wheel(tmp_path / "pipeline", tmp_path / "packages")
    kb_sqlite.rename(kb_sqlite.with_suffix(".away"))  # the installed package must not need the original KB
    try:
        install = subprocess.run([str(fresh_python), "-m", "pip", "install", "-q", "--no-index", str(wheel)],
                                 capture_output=True, text=True, timeout=600)
        assert install.returncode == 0, install.stderr[-3000:]
        texts = json.dumps(TEXTS)
        installed = subprocess.run([str(fresh_python), "-c", OUTPUT, PACKAGE_NAME, texts], capture_output=True, text=True,
                                   timeout=600, env=_offline_env(), cwd=tmp_path)
        assert installed.returncode == 0, installed.stderr[-3000:]
        here = subprocess.run([sys.executable, "-c", OUTPUT, str(tmp_path / "pipeline"), texts], capture_output=True,
                              text=True, timeout=600, env=dict(_offline_env(), PYTHONPATH=str(REPO)), cwd=tmp_path)
        assert here.returncode == 0, here.stderr[-3000:]
    finally:
        kb_sqlite.with_suffix(".away").rename(kb_sqlite)
    shipped = json.loads(installed.stdout.strip().splitlines()[-1])
    assert shipped == json.loads(here.stdout.strip().splitlines()[-1])
    assert any(doc["ents"] for doc in shipped) and any(doc["relations"] for doc in shipped)
    assert any(kb_id for doc in shipped for *_, kb_id in doc["ents"])  # the linker linked from the shipped KB
    assert {"sc", "relex"} <= set(shipped[0]["spans"])


def test_a_package_whose_kb_was_left_outside_names_it_at_load(checkpoints, linker_model_dir, kb_sqlite, tmp_path):
    """``copy_kb = false`` keeps only the KB's path: ``spacy package`` cannot carry the file, and the
    installed pipeline fails at load with the path named, instead of linking against nothing."""
    import spacy

    kb = tmp_path / "outside.sqlite"
    kb.write_bytes(kb_sqlite.read_bytes())
    shipped_pipeline(tmp_path / "pipeline", checkpoints, linker_model_dir, kb, copy_kb=False)
    (tmp_path / "packages").mkdir()
    done = subprocess.run([sys.executable, "-m", "spacy", "package", str(tmp_path / "pipeline"), str(tmp_path / "packages"),
                           "--build", "none", "--force"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    data_dirs = [p for p in (tmp_path / "packages").rglob("meta.json") if (p.parent / "config.cfg").exists()]
    assert len(data_dirs) == 1
    kb.unlink()
    with pytest.raises(FileNotFoundError, match=r"gliner_linker.*outside\.sqlite"):
        spacy.load(data_dirs[0].parent)
