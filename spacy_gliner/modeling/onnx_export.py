"""The ONNX Runtime backend: the transformer encoders exported from our own modules, run by ORT.

What is exported is the text encoder (transformer plus projection) and, for bi-encoders, the
label encoder (with its mean pooling): they are where the time goes. The word pooling, the word
LSTM, the span head and the scoring stay in torch; they are small, and keeping them there keeps
one implementation of the scoring for both backends.

Exporter: torch's TorchScript-based ``torch.onnx.export(..., dynamo=False)`` traces the modules
with dynamic batch and sequence axes; it exports BERT/MiniLM, DeBERTa-v2/v3, XLM-R, ModernBERT
and mT5 encoders as transformers builds them, MiniLM in about 2 s (the dynamo exporter, which
needs onnxscript, gives the same graph numbers but took 10 s for MiniLM). Tracing can freeze a shape-dependent branch into
the graph, so every export is checked right away against the torch module on inputs of another
batch size and length: an encoder whose graph disagrees is an error naming its family, never a
silently different output.

An export is kept as files in a directory with a fingerprint of the weights it came from
(``fingerprint.json``); :class:`OnnxExports` reuses files whose fingerprint matches the current
weights and re-exports the others (after fine-tuning, say).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from .acceleration import with_encoders

# Bump when the exported graph changes for the same weights (inputs, outputs, opset): older
# exports then no longer match and are rebuilt.
EXPORT_FORMAT = 1
OPSET = 17
ENCODER_NAMES = ("text_encoder", "label_encoder")
FINGERPRINT_FILE = "fingerprint.json"
QUANTIZATIONS = (None, "int8")
BACKENDS = ("torch", "onnx")
INSTALL_HINT = 'pip install "spacy-gliner[onnx]"'
# An fp32 export must agree with torch to within float noise; a traced shape mistake is far larger.
EXPORT_TOLERANCE = 1e-3


class OnnxExportError(ValueError):
    """A model (family) whose encoders cannot be exported, or whose export disagrees with torch."""


def check_backend(backend: str, quantize: Optional[str], threads: Optional[int], owner: str) -> None:
    """Validate the settings (at ``add_pipe``): names the bad value and the allowed ones."""
    if backend not in BACKENDS:
        raise ValueError(f"{owner} 'backend' must be 'torch' or 'onnx', got {backend!r}.")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"{owner} 'onnx_quantize' must be null or 'int8', got {quantize!r}.")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"{owner} 'onnx_threads' must be null (this process's torch thread count) or an integer >= 1, got {threads!r}.")
    if backend == "torch" and (quantize is not None or threads is not None):
        raise ValueError(f"{owner}: 'onnx_quantize' and 'onnx_threads' apply to 'backend': 'onnx'; set the backend or leave them null.")
    if backend == "onnx":
        import_onnxruntime(owner)  # missing: fail at add_pipe, not at the first document


def import_onnxruntime(owner: str = "gliner"):
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(f"{owner}: 'backend': 'onnx' needs onnxruntime, which is not installed; install it with {INSTALL_HINT}.") from error
    return onnxruntime


def weights_fingerprint(module: nn.Module) -> str:
    """A hash of the module's weights (names, dtypes, shapes, values) and of the export format."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"format={EXPORT_FORMAT};opset={OPSET};type={type(module).__name__}".encode())
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def encoder_family(encoder: nn.Module) -> str:
    """How an error names the encoder: its transformer's model type."""
    return getattr(getattr(getattr(encoder, "transformer", None), "config", None), "model_type", None) or type(encoder).__name__


def example_inputs(encoder: nn.Module, batch: int, length: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Token ids inside the vocabulary, with a padded last row (the mask must reach the graph)."""
    vocab = int(getattr(encoder.transformer.config, "vocab_size", 1000))
    generator = torch.Generator().manual_seed(batch * 1000 + length)
    ids = torch.randint(5, max(vocab, 6), (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, length // 2 :] = 0
    return ids, mask


def export_encoder(encoder: nn.Module, path: Path, owner: str) -> None:
    """Write ``encoder`` (a TextEncoder or LabelEncoder) to ``path`` and check the file against it."""
    pooled = _is_pooled(encoder)  # a LabelEncoder gives one vector per row
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "vectors": {0: "batch"} if pooled else {0: "batch", 1: "sequence"}}
    family = encoder_family(encoder)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter warns about every traced branch of transformers
            torch.onnx.export(
                encoder, example_inputs(encoder, 2, 16), str(path), input_names=["input_ids", "attention_mask"],
                output_names=["vectors"], dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True,
            )
    except Exception as error:  # the exporter raises many types; all mean the same to the user
        raise OnnxExportError(
            f"{owner}: the {family} encoder of this model cannot be exported to ONNX ({type(error).__name__}: {error}). "
            "Use 'backend': 'torch' for this model."
        ) from error
    finally:
        encoder.train(was_training)
    check_export(encoder, path, family, owner)


def _is_pooled(encoder: nn.Module) -> bool:
    from .encoders import LabelEncoder

    return isinstance(encoder, LabelEncoder)


def check_export(encoder: nn.Module, path: Path, family: str, owner: str) -> None:
    """The exported graph must give the torch module's output on a batch size and length other
    than the traced ones (a shape frozen by tracing shows up here)."""
    ids, mask = example_inputs(encoder, 3, 23)
    session = open_session(path, threads=1, owner=owner)
    ours = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    with torch.no_grad():
        expected = encoder(ids, mask).float().numpy()
    if ours.shape != expected.shape or not np.allclose(ours, expected, atol=EXPORT_TOLERANCE, rtol=0):
        gap = float(np.abs(ours - expected).max()) if ours.shape == expected.shape else f"shape {ours.shape} vs {expected.shape}"
        raise OnnxExportError(
            f"{owner}: the ONNX export of the {family} encoder of this model does not reproduce the torch encoder "
            f"(largest difference {gap}); ONNX cannot run this model. Use 'backend': 'torch' for it."
        )


def quantize_export(source: Path, target: Path) -> None:
    """int8 weights with ONNX Runtime's dynamic quantization (activations quantised per batch).

    Per-channel weight scales: on MiniLM token vectors their cosine to fp32 is at least 0.987,
    against 0.943 with one scale per tensor (and 0.906 for torch's per-tensor dynamic int8)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantizer_log = logging.getLogger()  # ORT's quantizer advises pre-processing on the root logger, each call
    level = quantizer_log.level
    quantizer_log.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        quantizer_log.setLevel(level)


def open_session(path: Path, threads: int, owner: str):
    ort = import_onnxruntime(owner)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxEncoder(nn.Module):
    """Drop-in for a TextEncoder/LabelEncoder at inference: the same call, run by ONNX Runtime.

    The session is opened on first use, in the process that runs it, with ``threads`` intra-op
    threads or, when None, as many as torch uses in that process (``nlp.pipe(n_process=k)``
    workers each get their own share, so the processes do not oversubscribe the cores). It is
    not pickled: a worker opens its own."""

    def __init__(self, path: Path, threads: Optional[int], owner: str, keeper: object = None):
        super().__init__()
        self.path = Path(path)
        self.threads = threads
        self.owner = owner
        self._keeper = keeper  # what keeps ``path`` on disk (the exports' temporary directory) alive
        self._session = None

    @property
    def session(self):
        if self._session is None:
            self._session = open_session(self.path, self.threads or torch.get_num_threads(), self.owner)
        return self._session

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if input_ids.device.type != "cpu":
            raise ValueError(f"{self.owner}: 'backend': 'onnx' runs on the CPU; the model is on {input_ids.device}. Use 'backend': 'torch' on a GPU.")
        feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.to(input_ids.dtype).numpy()}
        return torch.from_numpy(self.session.run(None, feed)[0])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_session"] = None
        state["_keeper"] = None
        return state


class OnnxExports:
    """The export files of one model in a directory, rebuilt when the weights change.

    ``directory`` holds ``<encoder>.onnx`` (and ``<encoder>.int8.onnx``) for each encoder the
    model has, and ``fingerprint.json``: file name -> fingerprint of the weights it came from.
    A directory given to read from (a saved pipeline's) is never written: when it is missing or
    stale, exports go to a private temporary directory instead."""

    def __init__(self, quantize: Optional[str], threads: Optional[int], owner: str, saved: Optional[Path] = None):
        check_backend("onnx", quantize, threads, owner)  # imports onnxruntime too
        self.quantize = quantize
        self.threads = threads
        self.owner = owner
        self.saved = Path(saved) if saved is not None else None
        # exports made here: a temporary directory, removed with its keeper (this object)
        self._keeper: Optional[tempfile.TemporaryDirectory] = None
        self.own: Optional[Path] = None
        self.exported = 0  # files exported (not reused) by this object: tests and logs read it

    @property
    def own_directory(self) -> Path:
        if self.own is None:
            self._keeper = tempfile.TemporaryDirectory(prefix="spacy-gliner-onnx-")
            self.own = Path(self._keeper.name)
        return self.own

    def __getstate__(self):
        """A pickled copy (an ``nlp.pipe(n_process=k)`` worker) reads the files of the process it
        came from, which outlives its workers, and never removes them."""
        state = dict(self.__dict__)
        state["_keeper"] = None
        return state

    def detach(self) -> None:
        """Copy a saved directory's files into our own: the saved one is about to be removed."""
        if self.saved is None:
            return
        if self.saved.exists():
            for path in self.saved.iterdir():
                shutil.copyfile(path, self.own_directory / path.name)
        self.saved = None

    def files(self, model: nn.Module) -> Dict[str, Path]:
        """Encoder attribute name -> the ONNX file to run it with, exported when needed."""
        found: Dict[str, Path] = {}
        for name in ENCODER_NAMES:
            encoder = getattr(model, name, None)
            if encoder is None:
                continue
            fingerprint = weights_fingerprint(encoder)
            found[name] = self._file(name, encoder, fingerprint)
        return found

    def _file(self, name: str, encoder: nn.Module, fingerprint: str) -> Path:
        fp32_name = f"{name}.onnx"
        wanted = fp32_name if self.quantize is None else f"{name}.{self.quantize}.onnx"
        for directory in (self.saved, self.own):
            if directory is not None and read_fingerprints(directory).get(wanted) == fingerprint and (directory / wanted).exists():
                return directory / wanted
        directory = self.own_directory
        if read_fingerprints(directory).get(fp32_name) != fingerprint:
            export_encoder(encoder, directory / fp32_name, self.owner)
            self.exported += 1
            record_fingerprint(directory, fp32_name, fingerprint)
        if wanted != fp32_name:
            try:
                quantize_export(directory / fp32_name, directory / wanted)
            except Exception as error:  # ONNX Runtime's quantizer raises many types
                raise OnnxExportError(
                    f"{self.owner}: the ONNX export of the {encoder_family(encoder)} encoder of this model cannot be "
                    f"quantized to {self.quantize} ({type(error).__name__}: {error}). Leave 'onnx_quantize' null for it."
                ) from error
            record_fingerprint(directory, wanted, fingerprint)
        return directory / wanted

    def view(self, model: nn.Module) -> nn.Module:
        """``model`` with its encoders run by ONNX Runtime (the original is left untouched)."""
        if next(model.parameters()).device.type != "cpu":
            raise ValueError(f"{self.owner}: 'backend': 'onnx' runs on the CPU, but the model is on a GPU; use 'backend': 'torch' there.")
        files = self.files(model)
        return with_encoders(model, {name: OnnxEncoder(path, self.threads, self.owner, keeper=self._keeper)
                                     for name, path in files.items()})

    def save(self, model: nn.Module, target: Union[str, Path]) -> None:
        """Write the current export (made now if stale) to ``target``: what ``from_disk`` reuses."""
        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        fingerprints = {}
        for path in self.files(model).values():
            source_prints = read_fingerprints(path.parent)
            for file_name in {path.name, path.name.split(".")[0] + ".onnx"}:
                shutil.copyfile(path.parent / file_name, target / file_name)
                fingerprints[file_name] = source_prints[file_name]
        (target / FINGERPRINT_FILE).write_text(json.dumps(fingerprints, indent=2, sort_keys=True))


def read_fingerprints(directory: Path) -> Dict[str, str]:
    path = Path(directory) / FINGERPRINT_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}  # a damaged record: the files are re-exported


def record_fingerprint(directory: Path, file_name: str, fingerprint: str) -> None:
    prints = read_fingerprints(directory)
    prints[file_name] = fingerprint
    (directory / FINGERPRINT_FILE).write_text(json.dumps(prints, indent=2, sort_keys=True))
