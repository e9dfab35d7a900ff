"""A small GPT-2 base decoder for the generative-decoder run: randomly initialised weights and a
byte-level BPE tokenizer trained on the training corpus's text.

    python scripts/make_decoder.py --train-dir corpus/quick/train --output training/base_decoder

No pretrained GPT-2 can be reached from this machine (the hub is offline), so the decoder learns
label writing from the training run alone; with a pretrained decoder (e.g.
``openai-community/gpt2`` in the local hub cache) pass that as ``--vars.decoder`` instead. The
end-of-sequence token is the last vocabulary entry, inside the embedding table, as in GPT-2.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

EOS = "<|endoftext|>"


def corpus_text(train_dir: Path, limit: int):
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    texts = []
    for path in sorted(train_dir.glob("*.spacy")):
        for doc in DocBin().from_disk(path).get_docs(nlp.vocab):
            texts.append(doc.text)
            # the decoder writes type names: make sure their pieces are in the vocabulary
            texts.extend(span.label_ for span in doc.ents)
            if len(texts) >= limit:
                return texts
    return texts


def build(texts, output: Path, vocab_size: int, width: int, layers: int, heads: int, seed: int) -> None:
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size - 1, min_frequency=2, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    ))
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        vocab_file, merges_file = bpe.model.save(scratch)
        vocab = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        merges = Path(merges_file).read_text(encoding="utf-8")
    vocab[EOS] = len(vocab)
    (output / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (output / "merges.txt").write_text(merges, encoding="utf-8")
    fast = Tokenizer(models.BPE.from_file(str(output / "vocab.json"), str(output / "merges.txt")))
    fast.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast.decoder = decoders.ByteLevel()
    fast.post_processor = processors.ByteLevel(trim_offsets=False)
    fast.add_special_tokens([AddedToken(EOS, normalized=False)])
    fast.save(str(output / "tokenizer.json"))
    tokenizer = GPT2TokenizerFast(tokenizer_file=str(output / "tokenizer.json"), bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                  model_max_length=512)
    tokenizer.save_pretrained(str(output))
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(vocab), n_positions=512, n_embd=width, n_layer=layers, n_head=heads,
                        bos_token_id=vocab[EOS], eos_token_id=vocab[EOS])
    GPT2LMHeadModel(config).save_pretrained(str(output))
    print(f"base decoder: {len(vocab)} tokens, {layers} layers of {width} -> {output}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--texts", type=int, default=20000, help="sentences (and their type names) to train the BPE on")
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build(corpus_text(args.train_dir, args.texts), args.output, args.vocab_size, args.width, args.layers, args.heads, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
