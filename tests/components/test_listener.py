"""gliner_ner listening to a shared spaCy ``transformer`` (spacy-transformers): word vectors, the
converted pipeline's parity with the stand-alone component, bad input, training through the listener."""
import numpy as np
import pytest
import spacy
from spacy.tokens import Doc

from support import crossner_labels, crossner_sentences, split_words

pytest.importorskip("spacy_transformers")

LABELS = crossner_labels("AI")
THRESHOLD = 0.3  # random heads: low enough that every sentence has spans to compare


def word_docs(nlp, sentences):
    """Docs of the reference's words (space-separated: the transformer then reads the same subwords)."""
    return [Doc(nlp.vocab, words=split_words(s)) for s in sentences]


def standalone(checkpoint, **settings):
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoint), "labels": LABELS, "threshold": THRESHOLD, **settings})
    nlp.initialize()
    return nlp


@pytest.fixture(scope="module")
def converted(checkpoints, tmp_path_factory):
    """family -> (listening pipeline saved by the CLI and loaded back, stand-alone pipeline)."""
    from spacy_gliner.cli import main

    built = {}

    def get(family):
        if family not in built:
            out = tmp_path_factory.mktemp("listener") / family
            assert main(["to-listener", str(checkpoints(family)), str(out), "--labels", ",".join(LABELS)]) == 0
            nlp = spacy.load(out)
            nlp.get_pipe("gliner_ner").cfg["threshold"] = THRESHOLD
            built[family] = (nlp, standalone(checkpoints(family)))
        return built[family]

    return get


def spans_and_scores(doc):
    group = doc.spans["sc"]
    return [(s.start, s.end, s.label_) for s in group], np.array(group.attrs["scores"]), [(e.start, e.end, e.label_) for e in doc.ents]


@pytest.mark.parametrize("family", ["bi_sharp", "bi_token"])
def test_listener_word_vectors_are_the_text_towers_first_subwords(converted, family):
    import torch

    nlp, alone = converted(family)
    docs = list(nlp.pipe(word_docs(nlp, crossner_sentences("AI", 4)), disable=["gliner_ner"]))
    ner = nlp.get_pipe("gliner_ner")
    own = alone.get_pipe("gliner_ner").extractor
    words = [[t.text for t in doc] for doc in docs]
    listened = ner._listened_vectors(docs, [list(range(len(doc))) for doc in docs])
    pieces = [own.inputs.word_pieces(w) for w in words]
    with torch.no_grad():
        for vectors, doc_pieces in zip(listened, pieces):
            batch = own.inputs.build([doc_pieces])
            tokens = own.model.text_encoder.transformer(input_ids=batch.input_ids, attention_mask=batch.attention_mask)[0]
            first = tokens[0][batch.words_mask[0] > 0]  # the first subword of each word, in order
            assert vectors.shape == first.shape
            assert torch.allclose(vectors, first, atol=1e-5)


@pytest.mark.parametrize("family", ["bi_sharp", "bi_token"])
def test_converted_pipeline_matches_standalone_component(converted, family):
    nlp, alone = converted(family)
    assert nlp.pipe_names == ["transformer", "gliner_ner"]
    assert nlp.get_pipe("transformer").listening_components == ["gliner_ner"]
    assert nlp.get_pipe("gliner_ner").extractor.model.text_encoder.transformer is None  # one copy of the tower
    sentences = crossner_sentences("AI", 8)
    shared = list(nlp.pipe(word_docs(nlp, sentences)))
    own = list(alone.pipe(word_docs(alone, sentences)))
    found = 0
    for a, b in zip(shared, own):
        spans_a, scores_a, ents_a = spans_and_scores(a)
        spans_b, scores_b, ents_b = spans_and_scores(b)
        assert spans_a == spans_b and ents_a == ents_b
        np.testing.assert_allclose(scores_a, scores_b, atol=1e-5)
        found += len(spans_a)
    assert found > 10  # the comparison is not empty


def test_listening_pipeline_takes_empty_and_whitespace_docs_beside_others(converted):
    nlp, _ = converted("bi_sharp")
    docs = list(nlp.pipe(["", "   ", "Deep learning changed computer vision at Google .", ""]))
    assert [len(doc.spans.get("sc", [])) > 0 for doc in docs] == [False, False, True, False]


def test_whitespace_tokens_have_no_wordpieces_and_change_nothing(converted):
    """The transformer aligns no wordpiece to a whitespace token (thinc's reduce_first refuses such
    tokens; first_subword gives them zeros): the spans are the stand-alone component's."""
    nlp, alone = converted("bi_sharp")
    words = ["The", "  ", "European", "Union", "\n", "met", "in", "Brussels", "on", "deep", "learning", "."]
    spaces = [True, False, True, False, False, True, True, True, True, True, False, False]
    shared = nlp(Doc(nlp.vocab, words=words, spaces=spaces))
    own = alone(Doc(alone.vocab, words=words, spaces=spaces))
    assert spans_and_scores(shared)[0] == spans_and_scores(own)[0] and spans_and_scores(own)[0]
    np.testing.assert_allclose(spans_and_scores(shared)[1], spans_and_scores(own)[1], atol=1e-5)


def test_first_subword_pooling_and_its_gradient():
    from spacy_gliner.components.listener import first_subword
    from thinc.types import Ragged

    data = np.arange(12, dtype="float32").reshape(6, 2)
    pooled, backprop = first_subword()(Ragged(data, np.array([2, 0, 3, 0, 1], dtype="int32")), is_train=True)
    np.testing.assert_array_equal(pooled, [[0, 1], [0, 0], [4, 5], [0, 0], [10, 11]])
    gradient = backprop(np.ones((5, 2), dtype="float32")).dataXd
    np.testing.assert_array_equal(gradient[:, 0], [1, 0, 1, 0, 0, 1])


def test_converter_refuses_a_uni_encoder(checkpoints):
    from spacy_gliner.components.listener import build_listener_pipeline

    with pytest.raises(ValueError, match="not a bi-encoder"):
        build_listener_pipeline(str(checkpoints("uni_marker")), LABELS)


def listening_ner(nlp, checkpoint, upstream="transformer", pooling="spacy_gliner.first_subword.v1", **settings):
    return nlp.add_pipe("gliner_ner", config={"model": str(checkpoint), "labels": LABELS, "text_encoder": {
        "@architectures": "spacy-transformers.TransformerListener.v1", "upstream": upstream, "grad_factor": 1.0,
        "pooling": {"@layers": pooling}}, **settings})


def test_a_listener_with_the_onnx_backend_is_refused_at_add_pipe(checkpoints):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="text tower runs in the shared spaCy transformer"):
        listening_ner(nlp, checkpoints("bi_span"), backend="onnx")
    assert "gliner_ner" not in nlp.pipe_names


def test_listener_without_upstream_transformer_fails_at_initialize(checkpoints):
    nlp = spacy.blank("en")
    listening_ner(nlp, checkpoints("bi_span"))
    with pytest.raises(ValueError, match=r"no transformer component in the pipeline \(gliner_ner\) feeds it.*add_pipe\('transformer'"):
        nlp.initialize()


def test_listener_on_docs_without_transformer_output_fails_at_call(converted):
    nlp, _ = converted("bi_sharp")
    doc = nlp.make_doc("Deep learning changed computer vision .")
    with pytest.raises(ValueError, match=r"1 of 1 docs have no transformer output \(doc._.trf_data\)"):
        nlp.get_pipe("gliner_ner")(doc)


def with_narrow_transformer(directory):
    """A blank pipeline whose 'transformer' is a 64-wide BERT (MiniLM's tokenizer): narrower than
    every replica's 384-wide text tower."""
    from transformers import AutoTokenizer, BertConfig, BertModel
    from support import minilm_dir

    narrow = directory / "narrow"
    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128)
    BertModel(config).save_pretrained(narrow)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(narrow)
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {"name": str(narrow)}})
    return nlp


def test_transformer_of_another_width_fails_naming_both_sizes(checkpoints, tmp_path):
    nlp = with_narrow_transformer(tmp_path)
    listening_ner(nlp, checkpoints("bi_span"))
    with pytest.raises(ValueError, match="transformer 'transformer' gives 64-wide vectors, but the checkpoint's text tower is 384 wide"):
        nlp.initialize()


def test_listener_pooling_must_match_the_checkpoint(checkpoints):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=r"pools subwords into words by 'first'.*reduce_mean.*spacy_gliner.first_subword.v1"):
        listening_ner(nlp, checkpoints("bi_span"), pooling="reduce_mean.v1")


def test_listener_refuses_a_uni_encoder_checkpoint(checkpoints):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="replaces the text tower of bi-encoder checkpoints only"):
        listening_ner(nlp, checkpoints("uni_marker"))


def test_text_encoder_must_be_a_listener(checkpoints):
    from spacy_gliner.components.ner import GlinerNER
    from thinc.api import Linear

    with pytest.raises(ValueError, match="'text_encoder' must listen to an upstream transformer"):
        GlinerNER(spacy.blank("en").vocab, model=str(checkpoints("bi_span")), labels=LABELS, text_encoder=Linear(2, 2))


CONLL_LABELS = {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "miscellaneous"}


def listener_training_config(tmp_path, **overrides):
    """component_configs/gliner_ner_listener_train.cfg on CoNLL-2003 sentences (POS tags and entities)."""
    from spacy.tokens import DocBin
    from spacy.util import load_config
    from support import conll2003_docs, minilm_dir

    for split, limit in (("train", 64), ("valid", 16)):
        DocBin(docs=conll2003_docs(split, limit)).to_disk(tmp_path / f"{split}.spacy")
    config = {
        "paths.train": str(tmp_path / "train.spacy"), "paths.dev": str(tmp_path / "valid.spacy"), "paths.encoder": minilm_dir(),
        "initialize.components": {"gliner_ner": {"labels": CONLL_LABELS}},
        "training.optimizer.learn_rate": 3e-4, "components.gliner_ner.training.head_lr": 1e-3,
        **overrides,
    }
    from test_component_configs import CONFIGS

    return load_config(CONFIGS / "gliner_ner_listener_train.cfg", overrides=config)


def test_listener_gradients_train_the_shared_transformer_with_a_tagger(tmp_path):
    """gliner_ner's loss alone moves the shared transformer; then tagger and gliner_ner train together
    on one encoder pass per batch and both losses fall."""
    import random

    from spacy.training import Example
    from spacy.training.initialize import init_nlp
    from support import conll2003_docs

    nlp = init_nlp(listener_training_config(tmp_path))
    assert nlp.get_pipe("transformer").listening_components == ["tagger", "gliner_ner"]
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]), d)
                for d in conll2003_docs("train", 64)]
    tower = nlp.get_pipe("transformer").model.transformer
    tower_before = [p.detach().clone() for p in tower.parameters()]
    softmax = next(node for node in nlp.get_pipe("tagger").model.walk() if node.name == "softmax")
    tagger_before = softmax.get_param("W").copy()
    optimizer = nlp.create_optimizer()
    losses = {}
    nlp.update(examples[:8], sgd=optimizer, losses=losses, exclude=["tagger"])
    assert losses["gliner_ner"] > 0
    # spaCy steps each component's optimizer right after its own update, so the transformer applies
    # what its listeners sent at its next step (as with tok2vec): the gradient is there now
    assert any(p.grad is not None and float(p.grad.abs().max()) > 0 for p in tower.parameters())
    nlp.get_pipe("transformer").finish_update(optimizer)
    moved = max(float((p.detach() - b).abs().max()) for p, b in zip(tower.parameters(), tower_before))
    assert moved > 1e-5, "gliner_ner's gradient did not reach the shared transformer"
    assert np.array_equal(softmax.get_param("W"), tagger_before)

    rng = random.Random(0)
    history = []
    for _ in range(16):
        losses = {}
        nlp.update(rng.sample(examples, 8), sgd=optimizer, losses=losses)
        history.append(losses)
    for name in ("tagger", "gliner_ner"):
        first, last = np.mean([h[name] for h in history[:4]]), np.mean([h[name] for h in history[-4:]])
        assert last < 0.85 * first, f"{name} loss did not fall: {first:.1f} -> {last:.1f}"
    assert nlp.get_pipe("gliner_ner").extractor.model.text_encoder.transformer is None, \
        "a listening gliner_ner keeps no text tower of its own"

def test_spacy_train_runs_the_listener_config(tmp_path):
    """``spacy train`` on the ready config: [transformer, tagger, gliner_ner] trains, saves and loads back."""
    from spacy.cli.train import train

    config = listener_training_config(tmp_path)
    config_path = tmp_path / "config.cfg"
    config.to_disk(config_path)
    train(config_path, tmp_path / "out", overrides={"training.max_steps": 2, "training.eval_frequency": 1000})
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert nlp.pipe_names == ["transformer", "tagger", "gliner_ner"]
    doc = nlp("Angela Merkel met Emmanuel Macron in Paris on Monday .")
    assert all(token.tag_ for token in doc) and "sc" in doc.spans


def without_dropout(module):
    import torch

    for layer in module.modules():
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
        if hasattr(layer, "dropout_prob"):  # BERT's attention passes its rate to the SDPA kernel
            layer.dropout_prob = 0.0


def test_gradient_through_the_listener_is_the_text_towers_own(checkpoints):
    """The gradient gliner_ner sends back into the shared transformer equals the gradient of the
    same loss with respect to the stand-alone model's own text tower (same batch, dropout off)."""
    from spacy.training import Example
    from spacy_gliner.components.listener import build_listener_pipeline

    checkpoint = checkpoints("bi_sharp")
    sentences = crossner_sentences("AI", 4)
    gold = [(s, [(0, 1, LABELS[0]), (2, 4, LABELS[1])]) for s in sentences]

    def examples(nlp):
        out = []
        for text, spans in gold:
            reference = Doc(nlp.vocab, words=split_words(text))
            reference.ents = [reference.char_span(reference[a].idx, reference[b - 1].idx + len(reference[b - 1]), label=label)
                              for a, b, label in spans]
            out.append(Example(Doc(nlp.vocab, words=split_words(text)), reference))
        return out

    alone = standalone(checkpoint)
    own = alone.get_pipe("gliner_ner")
    without_dropout(own.extractor.model)
    batch = own._training_batch(examples(alone))
    own._batch_loss(batch).backward()
    expected = {name: p.grad for name, p in own.extractor.model.text_encoder.transformer.named_parameters()}

    shared = build_listener_pipeline(str(checkpoint), LABELS)
    tower = shared.get_pipe("transformer").model.transformer
    without_dropout(tower)
    without_dropout(shared.get_pipe("gliner_ner").extractor.model)
    shared.update(examples(shared), sgd=None)  # the transformer is not stepped: its gradient stays
    assert_same_gradients(expected, tower)


def assert_same_gradients(expected, tower):
    """``tower``'s parameters hold the ``expected`` gradients (name -> tensor) of every layer.

    Attention key biases get float noise only (softmax ignores a shift shared by all keys): the
    tolerance is relative to each parameter's gradient and, for such noise, to the largest one."""
    got = dict(tower.named_parameters())
    largest = max(float(g.abs().max()) for g in expected.values() if g is not None)
    compared = 0
    for name, grad in expected.items():
        if grad is None or float(grad.abs().max()) == 0:
            continue
        assert got[name].grad is not None, name
        scale = float(grad.abs().max())
        assert float((got[name].grad - grad).abs().max()) <= 1e-3 * scale + 1e-6 * largest, name
        compared += 1
    assert compared > 50  # every layer of the tower
