"""What every gliner component shares: batched calling and byte serialization via the directory form."""
from __future__ import annotations

import io
import tarfile
import tempfile
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator

from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example

# A saved component directory: its settings file and the GLiNER checkpoint beside it.
SETTINGS_FILE = "cfg"
CHECKPOINT_DIR = "checkpoint"
ONNX_DIR = "onnx"  # the ONNX export, with backend onnx


class GlinerPipe(TrainablePipe):
    """Subclasses implement ``predict``, ``set_annotations``, ``to_disk`` and ``from_disk``.

    A ``TrainablePipe`` whose network is a torch module trained by the component's own optimizer
    inside ``update`` (the encoder and the heads learn at separate rates). thinc's slot
    ``self.model`` therefore holds no weights of ours: ``None``, or a ``text_encoder`` listener
    whose weights are the shared spaCy ``transformer``'s (stepped by that component), so thinc's
    parameter averages (``use_params``) have nothing of ours to swap.
    """

    @property
    def listens(self) -> bool:
        """The text tower is a shared spaCy ``transformer`` (the ``text_encoder`` setting)."""
        return self.model is not None

    def finish_update(self, sgd) -> None:
        """Nothing left to do: ``update`` already stepped the component's optimizer."""

    @contextmanager
    def use_params(self, params: dict):
        """thinc's averaged parameters belong to thinc models; ours are torch's, used as they are."""
        yield

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        return self.scorer(examples, spans_key=self.cfg["spans_key"], **kwargs)

    def __call__(self, doc: Doc) -> Doc:
        self.set_annotations([doc], self.predict([doc]))
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Documents are grouped so their windows are batched together, sorted by length."""
        from spacy.util import minibatch

        for docs in minibatch(stream, size=batch_size):
            self.set_annotations(docs, self.predict(docs))
            yield from docs

    def to_bytes(self, *, exclude=tuple()) -> bytes:
        """The ``to_disk`` directory as a tar archive; ``exclude`` leaves out the same fields."""
        with tempfile.TemporaryDirectory() as tmp:
            self.to_disk(tmp, exclude=exclude)
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                tar.add(tmp, arcname=".")
            return buffer.getvalue()

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()):
        with tempfile.TemporaryDirectory() as tmp:
            with tarfile.open(fileobj=io.BytesIO(bytes_data), mode="r") as tar:
                tar.extractall(tmp, filter="data")
            self.from_disk(tmp, exclude=exclude)
            self._detach_from_directory()
        return self

    def _detach_from_directory(self) -> None:
        """Copy into memory anything ``from_disk`` memory-mapped: the directory is about to go."""


def local_checkpoint_config(source: str):
    """The checked config of a local checkpoint directory; None for a hub id (checked to be in
    the local hub cache). What a component can check at ``add_pipe`` without loading weights."""
    from pathlib import Path

    from ..modeling.checkpoint import check_cached_hub_checkpoint, check_checkpoint_files

    directory = Path(source).expanduser()
    if not directory.is_dir():
        check_cached_hub_checkpoint(source)
        return None
    return check_checkpoint_files(directory)


def check_backend_settings(backend, onnx_quantize, onnx_threads, torch_acceleration, owner: str) -> None:
    """``backend``, ``onnx_quantize`` and ``onnx_threads`` (at ``add_pipe``); the torch speed-ups
    (``quantize``, ``precision``, ``compile``) act on torch encoders and do not combine with ONNX."""
    from ..modeling.onnx_export import check_backend

    check_backend(backend, onnx_quantize, onnx_threads, owner)
    quantize, precision, compile = torch_acceleration
    if backend == "onnx" and (quantize is not None or precision != "float32" or compile):
        raise ValueError(
            f"{owner}: 'backend': 'onnx' runs the encoders in ONNX Runtime, so the torch settings 'quantize', "
            "'precision' and 'compile' do not apply; leave them at their defaults (int8 with ONNX: 'onnx_quantize')."
        )


def onnx_exports(cfg, owner: str, saved_dir=None):
    """The ONNX exports a pipe with ``backend: onnx`` runs (``saved_dir``: a saved pipeline's, reused if current)."""
    from ..modeling.onnx_export import OnnxExports

    return OnnxExports(cfg.get("onnx_quantize"), cfg.get("onnx_threads"), owner, saved=saved_dir)
