"""The tiny hub-encoder replicas load through the Auto classes, offline, and behave like the
real repos where loaders care: file layout, special-token ids, vocabulary vs embedding size."""
import os
import unicodedata

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from zoo.encoders import HUB_FILES, KINDS, MULTILINGUAL, accented_text, build_base_encoder, shared_text

HIDDEN = 64
# Everyday words: none may become an unknown token in any kind.
COMMON = ("The president said on Monday that the government would meet the new team in "
          "London , and the film was released in 2010 by a British company .")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """kind -> directory, each kind built once for this module."""
    root = tmp_path_factory.mktemp("encoders")
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = build_base_encoder(kind, root / kind)
        return cache[kind]

    return get


def _load_tokenizer(directory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def _encoder(kind, directory):
    """The encoder as GLiNER loads it: AutoModel, except mT5 whose encoder alone is used."""
    from transformers import AutoModel, MT5EncoderModel

    model_class = MT5EncoderModel if kind == "mt5" else AutoModel
    model, info = model_class.from_pretrained(str(directory), output_loading_info=True)
    return model.eval(), info


def _sentences(kind):
    sentences = shared_text(40)
    if kind in MULTILINGUAL:
        # NFKC-stable ones only: SentencePiece normalizes e.g. "²" to "2" on purpose.
        sentences += [s for s in accented_text(20) if unicodedata.normalize("NFKC", s) == s]
    return sentences


@pytest.mark.parametrize("kind", KINDS)
def test_hub_file_layout(built, kind):
    assert {p.name for p in built(kind).iterdir()} == HUB_FILES[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_loads_offline_and_runs(built, kind):
    import torch
    from transformers import AutoConfig

    directory = built(kind)
    config = AutoConfig.from_pretrained(str(directory))
    tokenizer = _load_tokenizer(directory)
    assert tokenizer.is_fast
    model, info = _encoder(kind, directory)
    # Every encoder weight comes from the file (the hub's head weights may be left over);
    # only XLM-R's pooler is absent, as in the real repo.
    assert [k for k in info["missing_keys"] if not k.startswith("pooler.")] == []
    assert model.config.hidden_size == HIDDEN

    # a padded batch of two, except gpt2 which has no padding token
    batch = shared_text(2) if tokenizer.pad_token is not None else shared_text(1)
    inputs = tokenizer(batch, return_tensors="pt", padding=len(batch) > 1)
    assert int(inputs["input_ids"].max()) < config.vocab_size
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state
    assert hidden.shape == (*inputs["input_ids"].shape, HIDDEN)
    assert torch.isfinite(hidden).all()


@pytest.mark.parametrize("kind", KINDS)
def test_tokenizer_round_trips_real_text(built, kind):
    tokenizer = _load_tokenizer(built(kind))
    unk = tokenizer.unk_token_id
    common = tokenizer(COMMON, add_special_tokens=False)["input_ids"]
    assert unk is None or unk not in common
    assert len(common) < 2 * len(COMMON.split())  # whole words, not characters
    for sentence in _sentences(kind):
        ids = tokenizer(sentence)["input_ids"]
        if unk in ids:
            # English SentencePiece (character_coverage 0.9995) drops rare characters such
            # as an em dash; plain ASCII text must never hit [UNK].
            assert kind not in MULTILINGUAL and not sentence.isascii(), (kind, sentence)
            continue
        text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        assert " ".join(text.split()) == " ".join(sentence.split()), kind


@pytest.mark.parametrize("kind", ["deberta-v3", "mdeberta-v3"])
def test_deberta_v3_vocabulary_like_the_hub(built, kind):
    from transformers import AutoConfig, AutoTokenizer

    directory = built(kind)
    assert not (directory / "tokenizer.json").exists()
    config = AutoConfig.from_pretrained(str(directory))
    assert config.pos_att_type == ["p2c", "c2p"]
    fast = _load_tokenizer(directory)
    slow = AutoTokenizer.from_pretrained(str(directory), use_fast=False)
    # the embedding table has spare rows beyond the tokenizer (real: 128100 vs 128001)
    assert config.vocab_size > len(fast) == len(slow)
    ids = {t: fast.convert_tokens_to_ids(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]")}
    assert ids == {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3, "[MASK]": len(fast) - 1}
    sentence = shared_text(1)[0]
    assert fast(sentence)["input_ids"] == slow(sentence)["input_ids"]


def test_deberta_kinds_have_different_vocabularies(built):
    english, multilingual = (_load_tokenizer(built(k)) for k in ("deberta-v3", "mdeberta-v3"))
    assert len(english) != len(multilingual)


def test_xlm_roberta_fairseq_ids(built):
    from transformers import AutoConfig

    directory = built("xlm-roberta")
    tokenizer = _load_tokenizer(directory)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>")]
    assert ids == [0, 1, 2, 3]
    assert tokenizer.mask_token_id == len(tokenizer) - 1
    assert AutoConfig.from_pretrained(str(directory)).vocab_size == len(tokenizer)


def test_mt5_is_a_full_encoder_decoder_checkpoint(built):
    from transformers import AutoModel

    directory = built("mt5")
    tokenizer = _load_tokenizer(directory)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    model, info = AutoModel.from_pretrained(str(directory), output_loading_info=True)
    assert type(model).__name__ == "MT5Model" and info["missing_keys"] == []


def test_modernbert_special_tokens_and_sliding_window(built):
    import torch
    from transformers import AutoConfig

    directory = built("modernbert")
    config = AutoConfig.from_pretrained(str(directory))
    tokenizer = _load_tokenizer(directory)
    ids = tokenizer("hello world")["input_ids"]
    assert ids[0] == config.cls_token_id and ids[-1] == config.sep_token_id
    assert tokenizer.pad_token_id == config.pad_token_id
    assert config.vocab_size == len(tokenizer) and config.vocab_size % 64 == 0
    # longer than the 128-token window of the local-attention layer
    model, _ = _encoder("modernbert", directory)
    inputs = tokenizer(" ".join(shared_text(12)), return_tensors="pt")
    assert inputs["input_ids"].shape[1] > config.local_attention
    with torch.no_grad():
        assert model(**inputs).last_hidden_state.shape[-1] == HIDDEN


def test_gpt2_eos_inside_its_vocabulary(built):
    import json
    from transformers import AutoConfig

    directory = built("gpt2")
    config = AutoConfig.from_pretrained(str(directory))
    tokenizer = _load_tokenizer(directory)
    vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.eos_token_id == config.eos_token_id == vocab["<|endoftext|>"]
    assert config.eos_token_id < config.vocab_size == len(vocab) == len(tokenizer)


def test_builds_are_deterministic(tmp_path):
    first = build_base_encoder("deberta-v3", tmp_path / "a")
    second = build_base_encoder("deberta-v3", tmp_path / "b")
    for name in HUB_FILES["deberta-v3"]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="unknown encoder kind"):
        build_base_encoder("bert", tmp_path)
