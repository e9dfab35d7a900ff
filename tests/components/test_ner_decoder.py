"""gliner_ner on a generative label decoder checkpoint (UniEncoderSpanDecoder replica, see
tests/zoo/families.py): where the generated labels go, how they survive serialization, and the
settings' errors."""
from contextlib import contextmanager

import pytest
import spacy
from spacy.tokens import Doc, DocBin

from modeling.test_label_decoder import CONSTRAINTS, LABELS, TEXTS, reference_generation, threshold_selecting
from support import split_words


@pytest.fixture(scope="module")
def decoder_hub_id(hub_families):
    return hub_families("span_decoder")


@pytest.fixture(scope="module")
def threshold(decoder_hub_id):
    from spacy_gliner.inference.entities import EntityExtractor
    from spacy_gliner.modeling.checkpoint import load_checkpoint

    return threshold_selecting(EntityExtractor(load_checkpoint(decoder_hub_id)), TEXTS, LABELS, 30)


def decoder_nlp(hub_id, threshold, **settings):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": hub_id, "labels": LABELS, "threshold": threshold, "batch_size": 4,
                                       "nested": True, **settings})
    return nlp


def docs_of(nlp, texts):
    return [Doc(nlp.vocab, words=split_words(t)) for t in texts]


def annotations(doc, key="sc"):
    group = doc.spans[key]
    return [(s.start, s.end, s.label_, tuple(g)) for s, g in zip(group, group.attrs["generated_labels"])]


def test_span_mode_keeps_classified_labels_and_stores_the_references_generated_ones(decoder_hub_id, threshold):
    from gliner import GLiNER

    nlp = decoder_nlp(decoder_hub_id, threshold, gen_constraints=CONSTRAINTS, num_gen_sequences=2)
    docs = list(nlp.pipe(docs_of(nlp, TEXTS)))
    reference = GLiNER.from_pretrained(decoder_hub_id)
    reference.eval()
    expected = reference_generation(reference, TEXTS, LABELS, False, threshold, gen_constraints=CONSTRAINTS, num_gen_sequences=2)
    ours = [annotations(doc) for doc in docs]
    assert sum(map(len, ours)) > 0
    assert ours == [sorted((s, e, label, tuple(g.strip() for g in gen)) for s, e, label, _, gen in doc) for doc in expected]
    assert all(len(doc.spans["sc"].attrs["generated_labels"]) == len(doc.spans["sc"]) for doc in docs)


@pytest.fixture(scope="module")
def prompt_nlp(decoder_hub_id, threshold):
    return decoder_nlp(decoder_hub_id, threshold, decoder_mode="prompt", gen_constraints=CONSTRAINTS)


def test_prompt_mode_names_each_span_with_its_generated_label(prompt_nlp):
    doc = prompt_nlp(docs_of(prompt_nlp, TEXTS[:1])[0])
    found = annotations(doc)
    assert found
    for start, end, label, generated in found:
        assert label == generated[0] and label in CONSTRAINTS
        assert label in doc.vocab.strings
    assert {ent.label_ for ent in doc.ents} <= set(CONSTRAINTS)


def test_empty_generation_falls_back_to_the_classified_label(decoder_hub_id, threshold):
    """A decoder whose every next token is end-of-sequence writes empty labels: in prompt mode
    each span then keeps the label it was classified with."""
    import torch

    nlp = decoder_nlp(decoder_hub_id, threshold, decoder_mode="prompt")
    pipe = nlp.get_pipe("gliner_ner")
    language_model = pipe.extractor.model.label_decoder.language_model
    eos = pipe.extractor.checkpoint.decoder_tokenizer.eos_token_id
    with torch.no_grad():  # final hidden state = the (enlarged) EOS embedding: EOS always wins
        embeddings = language_model.get_input_embeddings().weight
        embeddings[eos] *= 100
        language_model.transformer.ln_f.weight.zero_()
        language_model.transformer.ln_f.bias.copy_(embeddings[eos])
    doc = nlp(docs_of(nlp, TEXTS[:1])[0])
    found = annotations(doc)
    assert found and all(generated == ("",) for *_, generated in found)
    assert {label for _, _, label, _ in found} <= set(LABELS)


def test_generated_labels_survive_to_bytes_docbin_and_two_processes(prompt_nlp):
    # one doc per call, as each worker gets them with batch_size 1: as in the reference, the
    # prefix padding (so a generated label) depends on the other spans of a batch
    texts = TEXTS[:2]
    docs = [prompt_nlp(doc) for doc in docs_of(prompt_nlp, texts)]
    expected = [annotations(doc) for doc in docs]
    assert any(expected)
    assert [annotations(Doc(prompt_nlp.vocab).from_bytes(doc.to_bytes())) for doc in docs] == expected
    assert [annotations(doc) for doc in DocBin(docs=docs, store_user_data=True).get_docs(prompt_nlp.vocab)] == expected
    with spawned_workers():
        in_workers = [annotations(doc) for doc in prompt_nlp.pipe(docs_of(prompt_nlp, texts), n_process=2, batch_size=1)]
    assert in_workers == expected


@contextmanager
def spawned_workers():
    """``nlp.pipe(n_process=2)`` with spawned workers, as a torch user must: a worker forked from
    a process whose torch thread pool has run can hang for ever."""
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(method, force=True)


def test_disk_round_trip_keeps_the_decoder_and_its_settings(prompt_nlp, tmp_path):
    docs = docs_of(prompt_nlp, TEXTS[:2])
    before = [annotations(prompt_nlp(doc)) for doc in docs]
    prompt_nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("gliner_ner").cfg["gen_constraints"] == CONSTRAINTS
    assert [annotations(loaded(Doc(loaded.vocab, words=[t.text for t in doc]))) for doc in docs] == before


def test_long_document_is_windowed_and_every_span_gets_generated_labels(decoder_hub_id):
    words = [w for text in TEXTS for w in split_words(text)]
    assert len(words) > 60
    nlp = decoder_nlp(decoder_hub_id, 0.5, max_window_words=30, window_overlap=8)
    pipe = nlp.get_pipe("gliner_ner")
    pipe.cfg["threshold"] = threshold_selecting(pipe.extractor, [" ".join(words)], LABELS, 80)
    doc = nlp(Doc(nlp.vocab, words=words))
    found = annotations(doc)
    assert found and max(start for start, *_ in found) > 30
    assert all(len(generated) == 1 for *_, generated in found)


def test_prefixes_past_the_decoders_positions_are_shortened_to_fit(decoder_hub_id):
    """A batch whose reference prefix padding (label prompt + padding + a window's first words)
    and generated tokens pass the decoder's position table (as a 512-position decoder meets with
    the training data's label sets) still writes a label for every span it selected."""
    import torch

    words = [w for text in TEXTS for w in split_words(text)]
    nlp = decoder_nlp(decoder_hub_id, 0.5, max_window_words=40, window_overlap=8, max_generated_length=8)
    pipe = nlp.get_pipe("gliner_ner")
    pipe.cfg["threshold"] = threshold_selecting(pipe.extractor, [" ".join(words)], LABELS, 80)
    language_model = pipe.extractor.model.label_decoder.language_model
    positions = 24
    language_model.transformer.wpe = torch.nn.Embedding.from_pretrained(language_model.transformer.wpe.weight[:positions])
    language_model.config.n_positions = positions
    assert pipe.extractor.model.label_decoder.max_positions == positions
    with pytest.raises(IndexError):  # the shortened table really is the bound
        language_model(inputs_embeds=torch.zeros(1, positions + 1, language_model.config.n_embd))
    doc = nlp(Doc(nlp.vocab, words=words))
    found = annotations(doc)
    assert len(found) > 5 and max(start for start, *_ in found) > 32  # the second window too
    assert all(len(generated) == 1 for *_, generated in found)
    with pytest.raises(ValueError, match="embeds only 24 positions.*at most 23"):
        pipe.extractor.set_generation(max_new_tokens=24)


def test_generated_length_past_the_decoders_positions_fails_when_the_model_loads(decoder_hub_id):
    nlp = decoder_nlp(decoder_hub_id, 0.5, max_generated_length=1024)  # a hub id: checked when it loads
    with pytest.raises(ValueError, match="max_generated_length is 1024.*embeds only 1024 positions.*at most 1023"):
        nlp.initialize()
    from huggingface_hub import snapshot_download

    with pytest.raises(ValueError, match="max_generated_length is 1024.*at most 1023"):  # a directory: at add_pipe
        decoder_nlp(snapshot_download(decoder_hub_id), 0.5, max_generated_length=1024)


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"gen_constraints": []}, "non-empty list"),
        ({"gen_constraints": ["band", "   "]}, "whitespace-only"),
        ({"gen_constraints": "band"}, "gen_constraints.*'band' is not"),  # spaCy's config check
        ({"decoder_mode": "label"}, "decoder_mode"),
        ({"num_gen_sequences": 0}, "num_gen_sequences"),
        ({"max_generated_length": 0}, "max_generated_length"),
    ],
)
def test_bad_decoder_settings_fail_at_add_pipe(decoder_hub_id, settings, message):
    with pytest.raises(ValueError, match=message):
        decoder_nlp(decoder_hub_id, 0.5, **settings)


def test_decoder_settings_on_a_checkpoint_without_decoder_fail_at_add_pipe(checkpoints):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="gen_constraints only apply to checkpoints with a generative label decoder"):
        nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_markerV0")), "labels": LABELS, "gen_constraints": ["band"]})


def test_onnx_backend_gives_the_torch_spans_and_generated_labels(decoder_hub_id, threshold):
    """The decoder family on ONNX Runtime: the encoder runs there, the decoder stays in torch."""
    pytest.importorskip("onnxruntime")
    on_torch = decoder_nlp(decoder_hub_id, threshold, gen_constraints=CONSTRAINTS, num_gen_sequences=2)
    on_onnx = decoder_nlp(decoder_hub_id, threshold, gen_constraints=CONSTRAINTS, num_gen_sequences=2, backend="onnx")
    expected = [annotations(doc) for doc in on_torch.pipe(docs_of(on_torch, TEXTS))]
    found = list(on_onnx.pipe(docs_of(on_onnx, TEXTS)))
    assert on_onnx.get_pipe("gliner_ner").extractor.onnx_exports is not None, "the encoder must run in ONNX Runtime"
    assert sum(map(len, expected)) > 0
    assert [annotations(doc) for doc in found] == expected
    scores = [score for doc in on_torch.pipe(docs_of(on_torch, TEXTS)) for score in doc.spans["sc"].attrs["scores"]]
    assert [score for doc in found for score in doc.spans["sc"].attrs["scores"]] == pytest.approx(scores, abs=1e-4)
