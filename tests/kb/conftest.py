"""Fixtures for the KB-layer tests.

The model is injected into the KB layer as ``encode(texts) -> (n, dim)`` array,
so these tests use :func:`toy_encode`, a deterministic hashed character-trigram
encoder. It is a stand-in for the GLiNER bi-encoder and makes no claim about
linking quality: it lets us test storage, fingerprints, incremental updates and
search exactly, with no torch and no checkpoint.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import List

import numpy as np
import pytest

from spacy_gliner.kb.entities import Entity
from spacy_gliner.kb.normalize import char_ngrams, normalize_mention

TOY_DIM = 64


def toy_encode(texts: List[str]) -> np.ndarray:
    """L2-normalised bag of hashed character trigrams (deterministic across runs)."""
    out = np.zeros((len(texts), TOY_DIM), dtype=np.float32)
    for i, text in enumerate(texts):
        for gram in char_ngrams(normalize_mention(text)):
            h = zlib.crc32(gram.encode("utf-8"))
            out[i, h % TOY_DIM] += 1.0 if (h >> 16) & 1 else -1.0
        norm = np.linalg.norm(out[i])
        if norm:
            out[i] /= norm
    return out


class CountingEncoder:
    """Wraps toy_encode and records how many texts it was asked to encode."""

    def __init__(self) -> None:
        self.texts: List[str] = []

    def __call__(self, texts: List[str]) -> np.ndarray:
        self.texts.extend(texts)
        return toy_encode(texts)


@pytest.fixture
def toy_encoder():
    """The toy encoder function itself (test modules cannot import conftest)."""
    return toy_encode


@pytest.fixture
def counting_encoder() -> CountingEncoder:
    return CountingEncoder()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """shared/data: $SPACY_GLINER_DATA, else ../shared/data beside the repo."""
    candidates = [os.environ.get("SPACY_GLINER_DATA"), Path(__file__).resolve().parents[3] / "shared" / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "elevant_el_benchmarks").is_dir():
            return Path(candidate)
    pytest.skip("shared/data corpora not available (set SPACY_GLINER_DATA)")


@pytest.fixture
def small_entities() -> List[Entity]:
    return [
        Entity("Q90", "Paris", ("City of Light",), "capital and largest city of France", ("city",), 100.0),
        Entity("Q47899", "Paris Hilton", ("Paris",), None, ("person",), 20.0),
        Entity("Q167646", "Paris", (), "Trojan prince in Greek mythology", ("mythological figure",), 5.0),
        Entity("Q142", "France", ("French Republic",), "country in Western Europe", ("country",), 300.0,
               {"France": 10.0, "French Republic": 1.0}),
        Entity("Q312", "Apple Inc.", ("Apple",), "American technology company", ("organization",), 50.0),
        Entity("Q89", "apple", (), "fruit of the apple tree", (), 10.0),
        Entity("Q19837", "Steve Jobs", (), None, (), 0.0),  # no description, no aliases, no types
    ]
