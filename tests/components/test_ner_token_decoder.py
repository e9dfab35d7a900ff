"""gliner_ner on the token form of the generative label decoder (UniEncoderTokenDecoder replica,
tests/zoo/families.py): the same settings and the same ``generated_labels`` attrs as the span
form, the reference's output, and a pipeline byte round trip."""
import pytest
import spacy
from spacy.tokens import Doc

from components.test_ner_decoder import annotations, docs_of
from modeling.test_label_decoder import reference_generation
from modeling.test_token_decoder import CONSTRAINTS, LABELS, TEXTS, THRESHOLD


@pytest.fixture(scope="module")
def token_decoder_hub_id(hub_families):
    return hub_families("token_decoder")


def token_decoder_nlp(hub_id, **settings):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": hub_id, "labels": LABELS, "threshold": THRESHOLD,
                                       "batch_size": len(TEXTS), "nested": True, **settings})
    return nlp


@pytest.fixture(scope="module")
def prompt_nlp(token_decoder_hub_id):
    return token_decoder_nlp(token_decoder_hub_id, decoder_mode="prompt", gen_constraints=CONSTRAINTS)


def test_span_mode_gives_the_references_spans_and_generated_labels(token_decoder_hub_id):
    from gliner import GLiNER

    nlp = token_decoder_nlp(token_decoder_hub_id, gen_constraints=CONSTRAINTS, num_gen_sequences=2)
    docs = list(nlp.pipe(docs_of(nlp, TEXTS)))
    reference = GLiNER.from_pretrained(token_decoder_hub_id)
    reference.eval()
    expected = reference_generation(reference, TEXTS, LABELS, False, THRESHOLD, batch_size=len(TEXTS),
                                    gen_constraints=CONSTRAINTS, num_gen_sequences=2)
    ours = [annotations(doc) for doc in docs]
    assert sum(map(len, ours)) > 0
    assert ours == [sorted((s, e, label, tuple(g.strip() for g in gen)) for s, e, label, _, gen in doc) for doc in expected]


def test_prompt_mode_names_spans_with_generated_labels_and_survives_to_bytes(prompt_nlp, token_decoder_hub_id):
    docs = list(prompt_nlp.pipe(docs_of(prompt_nlp, TEXTS)))
    found = [annotations(doc) for doc in docs]
    assert any(found)
    for start, end, label, generated in (span for doc in found for span in doc):
        assert label == generated[0] and label in CONSTRAINTS
    assert [annotations(Doc(prompt_nlp.vocab).from_bytes(doc.to_bytes())) for doc in docs] == found
    restored = spacy.blank("en")
    restored.add_pipe("gliner_ner", config={"model": token_decoder_hub_id, "labels": LABELS})
    restored.from_bytes(prompt_nlp.to_bytes())
    pipe = restored.get_pipe("gliner_ner")
    assert pipe.cfg["gen_constraints"] == CONSTRAINTS and pipe.extractor.config.is_token_decoder
    assert [annotations(doc) for doc in restored.pipe(docs_of(restored, TEXTS))] == found


@pytest.fixture(scope="module")
def lossy_decoder_checkpoint(token_decoder_hub_id, tmp_path_factory):
    """The replica with a decoder tokenizer that drops what it cannot read: a character-level BPE
    of a-z without unknown token or byte fallback (the byte-level replica tokenizer reads every
    string). Its ids lie inside the decoder's vocabulary; <|endoftext|> ends labels."""
    import shutil

    from huggingface_hub import snapshot_download
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("lossy") / "checkpoint"
    shutil.copytree(snapshot_download(token_decoder_hub_id), directory)
    shutil.rmtree(directory / "decoder_tokenizer")
    vocab = {"<|endoftext|>": 0, **{letter: i + 1 for i, letter in enumerate("abcdefghijklmnopqrstuvwxyz")}}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.Fuse()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>").save_pretrained(
        str(directory / "decoder_tokenizer")
    )
    return directory


@pytest.mark.parametrize(
    "constraints,message",
    [
        (["band", "日本"], r"entry '日本' tokenises to nothing with the decoder tokenizer.*remove it or spell it"),
        (["band", "café"], r"entry 'café' reads as 'caf' with the decoder tokenizer.*use 'caf' or another spelling"),
    ],
    ids=["vanishes", "loses-a-character"],
)
def test_constraints_the_decoder_tokenizer_cannot_read_fail_at_add_pipe(lossy_decoder_checkpoint, constraints, message):
    from spacy_gliner.modeling.label_decoder import LabelConstraintError

    nlp = spacy.blank("en")
    with pytest.raises(LabelConstraintError, match=message):
        nlp.add_pipe("gliner_ner", config={"model": str(lossy_decoder_checkpoint), "labels": LABELS,
                                           "gen_constraints": constraints})
    nlp.add_pipe("gliner_ner", config={"model": str(lossy_decoder_checkpoint), "labels": LABELS,
                                       "gen_constraints": ["band", "music band"]})  # readable labels are accepted


def test_onnx_backend_gives_the_torch_spans_and_generated_labels(token_decoder_hub_id):
    """The token form on ONNX Runtime: the encoder runs there; token scorer, span layer and
    decoder stay in torch."""
    pytest.importorskip("onnxruntime")
    on_torch = token_decoder_nlp(token_decoder_hub_id, num_gen_sequences=2)
    on_onnx = token_decoder_nlp(token_decoder_hub_id, num_gen_sequences=2, backend="onnx")
    expected = [annotations(doc) for doc in on_torch.pipe(docs_of(on_torch, TEXTS))]
    found = [annotations(doc) for doc in on_onnx.pipe(docs_of(on_onnx, TEXTS))]
    assert on_onnx.get_pipe("gliner_ner").extractor.onnx_exports is not None, "the encoder must run in ONNX Runtime"
    assert sum(map(len, expected)) > 0
    assert found == expected


def test_long_document_is_windowed_and_every_span_gets_generated_labels(token_decoder_hub_id):
    from support import split_words

    words = [word for text in TEXTS for word in split_words(text)]
    assert len(words) > 120
    nlp = token_decoder_nlp(token_decoder_hub_id, max_window_words=40, window_overlap=10)
    found = annotations(nlp(Doc(nlp.vocab, words=words)))
    assert found and max(start for start, *_ in found) > 40
    assert all(len(generated) == 1 for *_, generated in found)
