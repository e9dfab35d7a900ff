"""The encoder loop every task shares: windows sorted by length, cut into batches, encoded.

Entity extraction, relation extraction (end to end and between given entities) and linking all
read documents through planned windows (:mod:`spacy_gliner.inference.windows`). Each hands its
jobs (a window, or a window with what it needs besides) to :func:`window_batches`, which sorts
them shortest first (batches then pad their rows to similar lengths), builds the encoder inputs
and runs the task's encoder on each batch. The caller chooses the grad mode: linking trains
through this loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Iterator, List, Mapping, Optional, Sequence, TypeVar, Union

from ..modeling.inputs import InputBuilder
from ..modeling.model import EncodedBatch
from .windows import Window

Job = TypeVar("Job")
Encoded = TypeVar("Encoded")

# a document's subword ids per word, by document index (a list, or a dict of the documents used)
DocumentPieces = Union[Sequence[Sequence[List[int]]], Mapping[int, Sequence[List[int]]]]


@dataclass
class WindowBatch(Generic[Job, Encoded]):
    jobs: List[Job]
    windows: List[Window]  # windows[i] is jobs[i]'s window
    inputs: Optional[EncodedBatch]  # on the model's device; None for batches of given word vectors
    encoded: Encoded  # what the task's ``encode`` made of ``inputs``


def window_batches(
    jobs: Sequence[Job],
    pieces: DocumentPieces,
    builder: InputBuilder,
    batch_size: int,
    device,
    encode: Callable[[EncodedBatch], Encoded],
    window_of: Optional[Callable[[Job], Window]] = None,
    prompt: Optional[List[int]] = None,
    prompt_of: Optional[Callable[[Job], List[int]]] = None,
    length: str = "subwords",
) -> Iterator[WindowBatch[Job, Encoded]]:
    """Batches of ``batch_size`` jobs, shortest first, encoded by ``encode``.

    ``window_of(job)`` is the job's window (the job itself by default). Every row gets the
    label ``prompt``, or its own ``prompt_of(job)``. ``length`` orders jobs by their window's
    ``"subwords"`` or ``"words"``; the sort is stable, so equal lengths keep the jobs' order.
    """
    windows = [job if window_of is None else window_of(job) for job in jobs]
    if length == "subwords":
        def size(i: int) -> int:
            window = windows[i]
            return sum(len(p) for p in pieces[window.doc_index][window.start : window.end])
    elif length == "words":
        def size(i: int) -> int:
            return windows[i].length
    else:
        raise ValueError(f"window length is counted in 'subwords' or 'words', not {length!r}")
    order = sorted(range(len(jobs)), key=size)
    for begin in range(0, len(order), batch_size):
        chosen = order[begin : begin + batch_size]
        batch_windows = [windows[i] for i in chosen]
        texts = [pieces[w.doc_index][w.start : w.end] for w in batch_windows]
        if prompt_of is not None:
            built = builder.build(texts, prompts=[prompt_of(jobs[i]) for i in chosen])
        else:
            built = builder.build(texts, prompt)
        built = built.to(device)
        yield WindowBatch([jobs[i] for i in chosen], batch_windows, built, encode(built))


def word_vector_batches(
    windows: Sequence[Window],
    doc_vectors: Sequence["torch.Tensor"],
    batch_size: int,
    encode: Callable[["torch.Tensor", "torch.Tensor"], Encoded],
) -> Iterator[WindowBatch[Window, Encoded]]:
    """The same batching for documents whose word vectors are already computed (by a shared
    spaCy ``transformer``): shortest windows first, each row its window's slice of its
    document's (words, width) vectors, zero-padded as pooled words are. ``encode(words,
    word_mask)`` gets the (B, W, width) vectors and the (B, W) mask."""
    import torch

    order = sorted(range(len(windows)), key=lambda i: windows[i].length)
    for begin in range(0, len(order), batch_size):
        batch_windows = [windows[i] for i in order[begin : begin + batch_size]]
        lengths = torch.tensor([w.length for w in batch_windows])
        first = doc_vectors[batch_windows[0].doc_index]
        words = first.new_zeros((len(batch_windows), int(lengths.max()), first.size(-1)))
        for row, window in enumerate(batch_windows):
            words[row, : window.length] = doc_vectors[window.doc_index][window.start : window.end]
        word_mask = (torch.arange(words.size(1)).unsqueeze(0) < lengths.unsqueeze(1)).to(words.device)
        yield WindowBatch(batch_windows, batch_windows, None, encode(words, word_mask))


def check_word_vectors(docs_words: Sequence[Sequence[str]], doc_vectors: Sequence["torch.Tensor"], width: int) -> None:
    """Word vectors given for documents (by a shared spaCy ``transformer``): one (words, ``width``)
    tensor per document, ``width`` being the text tower's."""
    if len(doc_vectors) != len(docs_words):
        raise ValueError(f"{len(doc_vectors)} word vector arrays for {len(docs_words)} documents")
    for index, (words, vectors) in enumerate(zip(docs_words, doc_vectors)):
        if not words and vectors.size(0) == 0:
            continue  # an empty doc: the transformer gives it no columns either
        if tuple(vectors.shape) != (len(words), width):
            raise ValueError(
                f"document {index}: word vectors of shape {tuple(vectors.shape)}, expected ({len(words)}, {width}): "
                "one vector per word, as wide as the checkpoint's text tower"
            )
