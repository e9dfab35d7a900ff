"""inference/windows.py: how long documents are cut into windows, on the subword counts of real
CrossNER text, with the guarantees the extractors rely on (every word covered, limits kept, each
span start owned by exactly one window, every span up to the overlap's half-width whole inside its
owner)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacy_gliner.inference.windows import Window, plan_windows
from support import crossner_sentences, minilm_dir, split_words


def check_guarantees(windows, piece_counts, max_words, max_pieces, overlap):
    total = len(piece_counts)
    assert windows[0].start == 0 and windows[-1].end == total
    assert windows[0].own_start == 0 and windows[-1].own_end == total
    for window in windows:
        assert window.start <= window.own_start <= window.own_end <= window.end
        assert 0 < window.length <= max_words
        assert sum(piece_counts[window.start:window.end]) <= max_pieces
    for before, after in zip(windows, windows[1:]):
        assert before.own_end == after.own_start  # owned parts tile the document: no gap, no double
        assert after.start <= before.end  # consecutive windows touch or overlap
        assert after.start > before.start  # always progresses
    owners = [sum(w.own_start <= i < w.own_end for w in windows) for i in range(total)]
    assert owners == [1] * total
    # a span of up to overlap // 2 words starting in a window's own part lies inside that window
    reach = overlap // 2
    for window in windows:
        if window.end < total:
            assert window.own_end + reach <= window.end


@pytest.fixture(scope="module")
def real_piece_counts():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    words = [w for text in crossner_sentences("politics", 40) for w in split_words(text)]
    return [max(1, len(tokenizer.tokenize(word))) for word in words]


@pytest.mark.parametrize("max_words,max_pieces,overlap", [(384, 512, 24), (60, 10_000, 24), (50, 70, 8), (10, 10_000, 2)])
def test_real_text_windows_keep_every_guarantee(real_piece_counts, max_words, max_pieces, overlap):
    windows = plan_windows(3, real_piece_counts, max_words, max_pieces, overlap)
    assert all(isinstance(w, Window) and w.doc_index == 3 for w in windows)
    check_guarantees(windows, real_piece_counts, max_words, max_pieces, overlap)
    if sum(real_piece_counts) > max_pieces or len(real_piece_counts) > max_words:
        assert len(windows) > 1


def test_a_short_document_is_one_window():
    assert plan_windows(0, [1, 2, 1], 384, 512, 24) == [Window(0, 0, 3, 0, 3)]


def test_the_subword_limit_cuts_before_the_word_limit():
    windows = plan_windows(0, [4] * 30, 384, 40, 4)
    assert [w.length for w in windows][0] == 10
    check_guarantees(windows, [4] * 30, 384, 40, 4)


def test_a_word_longer_than_the_subword_budget_is_named():
    with pytest.raises(ValueError, match="word 2 has 600 subwords"):
        plan_windows(0, [1, 1, 600, 1], 384, 512, 24)


@pytest.mark.parametrize("max_words,max_pieces", [(0, 512), (384, 0)])
def test_limits_must_be_positive(max_words, max_pieces):
    with pytest.raises(ValueError, match="must be positive"):
        plan_windows(0, [1, 1], max_words, max_pieces, 2)


def test_an_empty_document_has_no_windows():
    assert plan_windows(0, [], 384, 512, 24) == []


@given(
    counts=st.lists(st.integers(1, 6), min_size=1, max_size=400),
    max_words=st.integers(8, 80),
    overlap=st.integers(0, 6).map(lambda k: 2 * k),
)
def test_any_document_keeps_every_guarantee(counts, max_words, overlap):
    max_pieces = 6 * max_words  # never the binding limit for a single word
    if overlap >= max_words // 2:
        overlap = 2 * (max_words // 6)
    check_guarantees(plan_windows(0, counts, max_words, max_pieces, overlap), counts, max_words, max_pieces, overlap)
