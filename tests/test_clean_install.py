"""``pip install .`` alone, in a fresh virtualenv, is enough to load a DeBERTa-v3 GLiNER as the hub
stores it (SentencePiece tokenizer files, no tokenizer.json): every package that takes is declared."""
import json
import subprocess
import venv
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_pip_install_alone_loads_a_deberta_v3_hub_checkpoint(tmp_path, hub_families):
    hub_id = hub_families("gliner_v2_1")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    (tmp_path / "constraints.txt").write_text(CONSTRAINTS)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--constraint", str(tmp_path / "constraints.txt"), str(REPO)],
        capture_output=True, text=True, timeout=1200,
    )
    assert install.returncode == 0, install.stderr[-3000:]
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
