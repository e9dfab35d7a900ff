"""Entity embedding store and dense search.

Embeddings come from ``toy_encode`` (conftest): a deterministic stand-in for
the injected GLiNER entity encoder, enough to test storage and search exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from spacy_gliner.kb.candidates import DenseCandidates, ExactAliasCandidates, MergedCandidates
from spacy_gliner.kb.dense import exact_top_k, top_k
from spacy_gliner.kb.embeddings import EmbeddingStore, StaleEmbeddingsError, ensure_embeddings
from spacy_gliner.kb.entities import Entity, entity_text
from spacy_gliner.kb.memory import InMemoryKB
from spacy_gliner.kb.sqlite import SQLiteKB


def test_build_store_is_float16_memmapped_and_row_aligned(tmp_path, small_entities, counting_encoder, toy_encoder):
    toy_encode = toy_encoder
    kb = SQLiteKB.create(tmp_path / "kb.sqlite", small_entities)
    store = ensure_embeddings(tmp_path / "emb", kb, counting_encoder, "toy-v1", batch_size=3, progress=False)
    assert isinstance(store.vectors, np.memmap) and store.vectors.dtype == np.float16
    assert store.vectors.shape == (7, 64)
    texts = [entity_text(e) for e in small_entities]
    assert counting_encoder.texts == texts
    np.testing.assert_allclose(store.vectors, toy_encode(texts), atol=1e-3)
    # second call: fresh store, nothing re-encoded
    again = ensure_embeddings(tmp_path / "emb", kb, counting_encoder, "toy-v1", progress=False)
    assert len(counting_encoder.texts) == 7 and again.fingerprint == store.fingerprint
    # a plain load with the right KB and encoder works
    assert EmbeddingStore.load(tmp_path / "emb", kb=kb, encoder_id="toy-v1").fingerprint == store.fingerprint


def test_incremental_add_and_changed_texts_encode_only_what_changed(tmp_path, small_entities, counting_encoder):
    kb = InMemoryKB(small_entities[:5])
    first = ensure_embeddings(tmp_path / "emb", kb, counting_encoder, "toy-v1", progress=False)
    old_rows = np.array(first.vectors[:5])
    counting_encoder.texts.clear()

    kb.add_entities(small_entities[5:])
    with pytest.raises(StaleEmbeddingsError, match="2 of 7 rows new or changed"):
        EmbeddingStore.load(tmp_path / "emb", kb=kb)
    grown = ensure_embeddings(tmp_path / "emb", kb, counting_encoder, "toy-v1", progress=False)
    assert counting_encoder.texts == [entity_text(e) for e in small_entities[5:]]
    assert grown.vectors.shape == (7, 64)
    np.testing.assert_array_equal(grown.vectors[:5], old_rows)

    # Same ids, one description changed -> only that row is re-encoded.
    edited = list(small_entities)
    edited[2] = Entity(edited[2].id, edited[2].name, description="prince of Troy")
    counting_encoder.texts.clear()
    refreshed = ensure_embeddings(tmp_path / "emb", InMemoryKB(edited), counting_encoder, "toy-v1", progress=False)
    assert counting_encoder.texts == ["Paris: prince of Troy"]
    assert refreshed.fingerprint != grown.fingerprint

    # A different encoder id invalidates everything.
    with pytest.raises(StaleEmbeddingsError, match="made by encoder 'toy-v1'"):
        EmbeddingStore.load(tmp_path / "emb", encoder_id="toy-v2")
    counting_encoder.texts.clear()
    ensure_embeddings(tmp_path / "emb", InMemoryKB(edited), counting_encoder, "toy-v2", progress=False)
    assert len(counting_encoder.texts) == 7


def test_damaged_store_is_rebuilt_not_used(tmp_path, small_entities, counting_encoder):
    kb = InMemoryKB(small_entities)
    ensure_embeddings(tmp_path / "emb", kb, counting_encoder, "toy-v1", progress=False)
    digests = np.load(tmp_path / "emb" / "row_digests.npy")
    digests[0, 0] ^= 1
    np.save(tmp_path / "emb" / "row_digests.npy", digests)
    with pytest.raises(StaleEmbeddingsError, match="inconsistent"):
        EmbeddingStore.load(tmp_path / "emb")
    counting_encoder.texts.clear()
    ensure_embeddings(tmp_path / "emb", kb, counting_encoder, "toy-v1", progress=False)
    assert len(counting_encoder.texts) == 7


def test_bad_encoder_output_is_rejected(tmp_path, small_entities):
    kb = InMemoryKB(small_entities)
    with pytest.raises(ValueError, match=r"shape \(7, dim\)"):
        ensure_embeddings(tmp_path / "a", kb, lambda texts: np.zeros((len(texts) - 1, 4)), "bad", progress=False)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ensure_embeddings(tmp_path / "b", kb, lambda texts: np.full((len(texts), 4), np.nan), "bad", progress=False)
    with pytest.raises(ValueError, match="float16"):
        ensure_embeddings(tmp_path / "c", kb, lambda texts: np.full((len(texts), 4), 1e6), "bad", progress=False)


def test_empty_kb_store(tmp_path, toy_encoder):
    toy_encode = toy_encoder
    store = ensure_embeddings(tmp_path / "emb", InMemoryKB(), toy_encode, "toy-v1", progress=False)
    assert len(store) == 0
    assert DenseCandidates(InMemoryKB(), store)("Paris", np.ones(64, np.float32)) == []


def test_exact_top_k_matches_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5003, 32)).astype(np.float16)
    queries = rng.standard_normal((7, 32)).astype(np.float32)
    full = queries @ vectors.astype(np.float32).T
    for chunk_size in (5003, 1000, 97):
        scores, rows = exact_top_k(vectors, queries, k=25, chunk_size=chunk_size)
        expected_rows = np.argsort(-full, axis=1, kind="stable")[:, :25]
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_allclose(scores, np.take_along_axis(full, expected_rows, 1), rtol=1e-5)
    # k larger than the matrix, ties broken by row
    tied = np.ones((4, 2), np.float16)
    scores, rows = exact_top_k(tied, np.ones(2), k=10, chunk_size=3)
    assert rows.tolist() == [[0, 1, 2, 3]]
    with pytest.raises(ValueError, match=r"shape \(n, 32\)"):
        exact_top_k(vectors, np.ones(31), k=3)
    with pytest.raises(ValueError, match="unknown dense search backend"):
        top_k(vectors, queries, 3, backend="annoy")


def test_faiss_backend_agrees_with_numpy_if_installed():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((2000, 16)).astype(np.float16)
    queries = rng.standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_array_equal(top_k(vectors, queries, 10, "faiss")[1], top_k(vectors, queries, 10, "numpy")[1])


def test_dense_candidates_over_a_memory_mapped_store(tmp_path, small_entities, toy_encoder):
    toy_encode = toy_encoder
    kb = SQLiteKB.create(tmp_path / "kb.sqlite", small_entities)
    ensure_embeddings(tmp_path / "emb", kb, toy_encode, "toy-v1", progress=False)
    store = EmbeddingStore.load(tmp_path / "emb", kb=kb, encoder_id="toy-v1")
    dense = DenseCandidates(kb, store, k=3, chunk_size=2)
    # querying with an entity's own text embedding finds that entity first
    for entity in small_entities:
        query = toy_encode([entity_text(entity)])[0]
        found = dense("ignored", query)
        assert found[0].entity_id == entity.id and found[0].source == "dense" and len(found) == 3
    assert dense("Paris") == []  # no query embedding and no encoder: nothing to search with
    with_encoder = DenseCandidates(kb, store, k=2, encode=toy_encode)
    assert with_encoder("Steve Jobs")[0].entity_id == "Q19837"
    merged = MergedCandidates([ExactAliasCandidates(kb), with_encoder], k=4)
    assert merged("Steve Jobs")[0].source == "exact+dense"
    with pytest.raises(ValueError, match="has 7 rows but the knowledge base has 8"):
        kb.add_entities([Entity("Q8", "Eight")])
        DenseCandidates(kb, store)


def test_float32_cache_and_streaming_paths_agree(tmp_path, small_entities, toy_encoder):
    kb = InMemoryKB(small_entities)
    ensure_embeddings(tmp_path / "emb", kb, toy_encoder, "toy-v1", progress=False)
    cached = EmbeddingStore.load(tmp_path / "emb")
    streamed = EmbeddingStore.load(tmp_path / "emb", float32_cache_bytes=0)
    queries = toy_encoder([entity_text(e) for e in small_entities])
    left, right = cached.search(queries, 3, chunk_size=2), streamed.search(queries, 3, chunk_size=2)
    np.testing.assert_array_equal(left[1], right[1])
    assert cached.search_matrix().dtype == np.float32 and isinstance(streamed.search_matrix(), np.memmap)
    dense = DenseCandidates(kb, cached, k=2)
    batched = dense.batch(queries)
    assert [found[0].entity_id for found in batched] == [e.id for e in small_entities]
    single = dense("France", queries[3])
    assert [c.entity_id for c in batched[3]] == [c.entity_id for c in single]
    assert [c.score for c in batched[3]] == pytest.approx([c.score for c in single], abs=1e-5)
