"""``backend: onnx`` on gliner_ner: the same spans as torch on every family, the export kept beside
the saved pipeline and rebuilt when the weights change, threads, int8 and bad input."""
import sys

import pytest
import spacy

from support import assert_same, crossner_labels, crossner_sentences, our_spans, separating_threshold
from zoo.families import FAMILIES as HUB_FAMILIES

LABELS = crossner_labels("AI")[:5] + ["musical artist"]
TEXTS = crossner_sentences("AI", 2) + crossner_sentences("music", 2)
ONNX_TOLERANCE = 1e-4

# the families of tests/support.py (real MiniLM encoder) and the hub replicas of every published
# encoder kind (DeBERTa-v3, mDeBERTa-v3, XLM-R, ModernBERT, mT5, post-fusion, token level)
# (bi_token adds nothing here: its label tower is bi_span's, its head uni_token's, and only the towers change)
LOCAL = ["uni_markerV0", "uni_marker", "bi_span", "uni_token"]
HUB = ["gliner_v2_1", "gliner_multi_v2_1", "gliner_xlmr", "multitask_token", "bi_v1", "bi_modern", "gliner_x", "bi_post_fusion"]
assert set(HUB) <= set(HUB_FAMILIES)


def pipeline(model, **settings):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(model), "labels": LABELS, "batch_size": 4, **settings})
    return nlp


def export_count(nlp):
    return nlp.get_pipe("gliner_ner").extractor.onnx_exports.exported


def assert_onnx_matches_torch(model):
    torch_nlp, onnx_nlp = pipeline(model, threshold=0.0), pipeline(model, backend="onnx")
    floor = our_spans(torch_nlp, TEXTS)
    threshold = separating_threshold([span[3] for doc in floor for span in doc], 0.5)
    for nlp in (torch_nlp, onnx_nlp):
        nlp.get_pipe("gliner_ner").cfg["threshold"] = threshold
    assert_same(our_spans(torch_nlp, TEXTS), our_spans(onnx_nlp, TEXTS), tolerance=ONNX_TOLERANCE)
    return onnx_nlp


@pytest.mark.parametrize("name", LOCAL)
def test_onnx_gives_the_torch_spans(name, checkpoints):
    assert_onnx_matches_torch(checkpoints(name))


@pytest.mark.parametrize("name", HUB)
def test_onnx_gives_the_torch_spans_on_every_encoder_family(name, hub_families):
    nlp = assert_onnx_matches_torch(hub_families(name))
    extractor = nlp.get_pipe("gliner_ner").extractor
    assert extractor.inference_model.text_encoder is not extractor.model.text_encoder  # ORT ran, torch kept
    assert export_count(nlp) == (2 if extractor.config.bi_encoder else 1)


def assert_encoders_follow_the_weights(nlp):
    """The running ONNX encoders give what the torch model's encoders give now."""
    import torch

    extractor = nlp.get_pipe("gliner_ner").extractor
    ids = torch.randint(5, 1000, (2, 9))
    mask = torch.ones_like(ids)
    for name in ("text_encoder", "label_encoder"):
        with torch.inference_mode():
            expected = getattr(extractor.model, name)(ids, mask)
            assert torch.allclose(getattr(extractor.inference_model, name)(ids, mask), expected, atol=ONNX_TOLERANCE)


def test_disk_round_trip_reuses_the_export_and_a_stale_one_is_rebuilt(checkpoints, tmp_path):
    from spacy.training import Example

    nlp = pipeline(checkpoints("bi_sharp"), backend="onnx")
    before = our_spans(nlp, TEXTS)
    nlp.to_disk(tmp_path / "pipe")
    saved = tmp_path / "pipe" / "gliner_ner" / "onnx"
    assert sorted(p.name for p in saved.iterdir()) == ["fingerprint.json", "label_encoder.onnx", "text_encoder.onnx"]

    loaded = spacy.load(tmp_path / "pipe")
    assert export_count(loaded) == 0  # both encoders run from the saved files
    assert loaded.get_pipe("gliner_ner").extractor.inference_model.text_encoder.path.parent == saved
    assert_same(before, our_spans(loaded, TEXTS), tolerance=ONNX_TOLERANCE)

    # fine-tuning changes the weights: the next forward pass re-exports both encoders
    pipe = loaded.get_pipe("gliner_ner")
    example = Example.from_dict(loaded.make_doc("Alan Turing worked on machine learning ."), {"entities": [(0, 11, pipe.labels[0])]})
    loaded.update([example])
    assert_encoders_follow_the_weights(loaded)
    assert export_count(loaded) == 2

    # a saved pipeline whose export no longer fits its weights (an export from before the tuning,
    # left by a later save with backend torch) is re-exported on load
    loaded.to_disk(tmp_path / "tuned")
    for path in saved.iterdir():
        (tmp_path / "tuned" / "gliner_ner" / "onnx" / path.name).write_bytes(path.read_bytes())
    reloaded = spacy.load(tmp_path / "tuned")
    assert export_count(reloaded) == 2
    assert_encoders_follow_the_weights(reloaded)


@pytest.fixture(scope="module")
def saved_torch_pipeline(checkpoints, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "pipe"
    pipeline(checkpoints("uni_sharp")).to_disk(path)
    return path


@pytest.fixture(scope="module")
def loaded_onnx(saved_torch_pipeline):
    """A pipeline saved with backend torch, loaded with backend onnx."""
    return spacy.load(saved_torch_pipeline, config={"components": {"gliner_ner": {"backend": "onnx", "onnx_threads": 1}}})


def test_export_command_writes_the_export_and_switches_the_backend(saved_torch_pipeline, loaded_onnx, tmp_path):
    import shutil

    from spacy_gliner.cli import main

    path = tmp_path / "pipe"
    shutil.copytree(saved_torch_pipeline, path)
    assert main(["export-onnx", str(path)]) == 0
    assert (path / "gliner_ner" / "onnx" / "text_encoder.onnx").exists()
    nlp = spacy.load(path)
    assert nlp.get_pipe("gliner_ner").cfg["backend"] == "onnx" and export_count(nlp) == 0
    assert_same(our_spans(loaded_onnx, TEXTS), our_spans(nlp, TEXTS), tolerance=ONNX_TOLERANCE)


def test_backend_is_chosen_at_load_and_survives_pickle_and_bytes(loaded_onnx, checkpoints):
    import pickle

    pipe = loaded_onnx.get_pipe("gliner_ner")
    assert pipe.cfg["backend"] == "onnx" and export_count(loaded_onnx) == 1
    before = our_spans(loaded_onnx, TEXTS)
    # what nlp.pipe(n_process=k) hands a spawned worker: it opens its own session on the same files
    assert_same(before, our_spans(pickle.loads(pickle.dumps(loaded_onnx)), TEXTS), tolerance=ONNX_TOLERANCE)
    copy = pipeline(checkpoints("uni_sharp"), backend="onnx")
    copy.get_pipe("gliner_ner").from_bytes(pipe.to_bytes())  # the directory read from is removed at once
    assert export_count(copy) == 0
    assert_same(before, our_spans(copy, TEXTS), tolerance=ONNX_TOLERANCE)


def test_threads_default_to_the_torch_thread_count_and_can_be_set(loaded_onnx):
    import torch

    from spacy_gliner.modeling.onnx_export import OnnxEncoder

    path = loaded_onnx.get_pipe("gliner_ner").extractor.inference_model.text_encoder.path
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # what an nlp.pipe(n_process=k) worker runs with, say
    try:
        default = OnnxEncoder(path, None, "gliner_ner").session
    finally:
        torch.set_num_threads(before)
    assert default.get_session_options().intra_op_num_threads == 3
    assert OnnxEncoder(path, 2, "gliner_ner").session.get_session_options().intra_op_num_threads == 2


def test_int8_runs_quantized_files_close_to_fp32(checkpoints, tmp_path):
    import torch

    int8 = pipeline(checkpoints("uni_sharp"), backend="onnx", onnx_quantize="int8")
    extractor = int8.get_pipe("gliner_ner").extractor
    encoder = extractor.inference_model.text_encoder
    assert encoder.path.name == "text_encoder.int8.onnx"
    assert encoder.path.stat().st_size < 0.5 * (encoder.path.parent / "text_encoder.onnx").stat().st_size
    # int8 changes the numbers, a little: the token vectors keep their direction
    ids = torch.randint(5, 1000, (2, 12))
    with torch.inference_mode():
        expected, quantized = extractor.model.text_encoder(ids, torch.ones_like(ids)), encoder(ids, torch.ones_like(ids))
    assert float(torch.nn.functional.cosine_similarity(expected, quantized, dim=-1).min()) > 0.95
    assert sum(map(len, our_spans(int8, TEXTS))) > 0
    int8.to_disk(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "gliner_ner" / "onnx" / "text_encoder.int8.onnx").exists()
    assert export_count(spacy.load(tmp_path / "pipe")) == 0


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(backend="tensorrt"), "'backend' must be 'torch' or 'onnx'"),
        (dict(backend="onnx", onnx_quantize="int4"), "'onnx_quantize' must be null or 'int8'"),
        (dict(backend="onnx", onnx_threads=0), "'onnx_threads' must be null"),
        (dict(onnx_quantize="int8"), "apply to 'backend': 'onnx'"),
        (dict(backend="onnx", quantize="int8"), "do not apply"),
    ],
)
def test_bad_settings_are_refused_at_add_pipe(settings, message, checkpoints):
    with pytest.raises(ValueError, match=message):
        pipeline(checkpoints("uni_sharp"), **settings)


def test_missing_onnxruntime_names_the_extra(checkpoints, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what import finds when it is not installed
    with pytest.raises(ImportError, match=r'pip install "spacy-gliner\[onnx\]"'):
        pipeline(checkpoints("uni_sharp"), backend="onnx")


def test_an_encoder_that_cannot_export_is_an_error_naming_it(checkpoints, monkeypatch):
    from spacy_gliner.modeling import onnx_export

    nlp = pipeline(checkpoints("uni_sharp"))

    def frozen_shapes(encoder, path, owner):  # a graph that ignores its inputs' shape
        import torch

        class Frozen(torch.nn.Module):  # traced slices keep the example's batch and length
            def __init__(self):
                super().__init__()
                self.inner = encoder

            def forward(self, input_ids, attention_mask):
                return self.inner(input_ids[:2, :16], attention_mask[:2, :16])

        with torch.no_grad():
            torch.onnx.export(Frozen().eval(), onnx_export.example_inputs(encoder, 2, 16), str(path), dynamo=False,
                              input_names=["input_ids", "attention_mask"], output_names=["vectors"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}})
        onnx_export.check_export(encoder, path, onnx_export.encoder_family(encoder), owner)

    monkeypatch.setattr(onnx_export, "export_encoder", frozen_shapes)
    with pytest.raises(onnx_export.OnnxExportError, match="the bert encoder .* does not reproduce the torch encoder"):
        nlp.get_pipe("gliner_ner").extractor.use_onnx(onnx_export.OnnxExports(None, None, "gliner_ner"))


def test_an_exporter_failure_is_an_error_naming_the_encoder(checkpoints, monkeypatch):
    import torch

    from spacy_gliner.modeling import onnx_export

    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::unheard_of' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    with pytest.raises(onnx_export.OnnxExportError, match="the bert encoder of this model cannot be exported to ONNX .*aten::unheard_of.*'backend': 'torch'"):
        pipeline(checkpoints("uni_sharp"), backend="onnx").get_pipe("gliner_ner").extractor


def test_relex_onnx_gives_the_torch_entities_and_relations(hub_families):
    from support import conll04_relation_sentences, relex_thresholds, split_words

    texts, relations = conll04_relation_sentences(4)
    labels = ["Peop", "Org", "Loc", "Other"]
    hub_id = hub_families("relex_span")

    def relex(**settings):
        nlp = spacy.blank("en")
        nlp.add_pipe("gliner_relex", config={"model": hub_id, "labels": labels, "relations": relations, **settings})
        return nlp

    torch_nlp, onnx_nlp = relex(), relex(backend="onnx")
    words = [split_words(text) for text in texts]
    t_ent, t_adj, t_rel, _ = relex_thresholds(torch_nlp.get_pipe("gliner_relex").extractor, words, labels, relations, 0.3, 0.5, 0.5)

    def found(nlp):
        nlp.get_pipe("gliner_relex").cfg.update(threshold=t_ent, adjacency_threshold=t_adj, relation_threshold=t_rel)
        docs = [nlp(spacy.tokens.Doc(nlp.vocab, words=w)) for w in words]
        return ([[(s.start, s.end, s.label_) for s in doc.spans["sc"]] for doc in docs],
                [{((r.head.start, r.head.end), (r.tail.start, r.tail.end), r.label): r.score for r in doc._.relations} for doc in docs])

    (torch_entities, torch_relations), (onnx_entities, onnx_relations) = found(torch_nlp), found(onnx_nlp)
    assert onnx_entities == torch_entities and sum(map(len, torch_entities)) > 0
    assert [set(r) for r in onnx_relations] == [set(r) for r in torch_relations] and sum(map(len, torch_relations)) > 0
    for ours, expected in zip(onnx_relations, torch_relations):
        assert all(abs(ours[key] - score) <= ONNX_TOLERANCE for key, score in expected.items())
    assert onnx_nlp.get_pipe("gliner_relex").extractor.onnx_exports.exported == 1


def test_a_view_keeps_its_exported_files_alive(loaded_onnx):
    import gc

    import torch

    from spacy_gliner.modeling.onnx_export import OnnxExports

    model = loaded_onnx.get_pipe("gliner_ner").extractor.model
    view = OnnxExports(None, 1, "gliner_ner").view(model)  # the exports object itself is dropped at once
    gc.collect()
    ids = torch.randint(5, 1000, (1, 7))
    with torch.inference_mode():
        assert torch.allclose(view.text_encoder(ids, torch.ones_like(ids)), model.text_encoder(ids, torch.ones_like(ids)), atol=ONNX_TOLERANCE)
