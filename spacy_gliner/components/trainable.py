"""What the trainable gliner components share: training settings, reading gold Examples, one
update with the component's own optimizer, loss without update.

``gliner_ner`` and ``gliner_relex`` differ only in the trainer and batch builder they make
(:meth:`TrainableGliner._make_trainer`) and in what they read from a gold Example besides the
entity spans (relations for relex). Torch is imported lazily, inside the methods.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import srsly
from spacy import util
from spacy.training import Example

from ..training.doc_keys import META_KEY
from ..training.settings import optimizer_settings
from .annotations import word_index, word_span
from .base import CHECKPOINT_DIR, ONNX_DIR, SETTINGS_FILE, onnx_exports

# Settings of training (GLiNER's recipe); every key is optional in a config.
DEFAULT_TRAINING: Dict[str, Any] = {
    "encoder_lr": 1e-5,
    "head_lr": 5e-5,
    "weight_decay": 0.01,
    "warmup_steps": 0,
    "total_steps": None,
    "schedule": "linear",
    "grad_clip": 10.0,
    "focal_alpha": 0.75,
    "focal_gamma": 0.0,
    "label_smoothing": 0.0,
    "reduction": "sum",
    "max_types": 25,
    "max_neg_type_ratio": 1,
    "negative_rule": "corpus",
    # Off by default: at 600 steps on MiniLM they cost most of the zero-shot F1 (bench/README_training.md).
    "random_drop": False,
    "empty_negatives": 0,
    "seed": 0,
}
NEW_MODEL_KEYS = ("encoder", "label_encoder", "span_mode", "hidden_size", "max_width", "max_len", "num_rnn_layers", "dropout", "seed",
                  "decoder", "decoder_loss_coef", "blank_entity_prob")


def check_new_model(spec: Dict[str, Any], name: str, keys=NEW_MODEL_KEYS) -> Dict[str, Any]:
    unknown = sorted(set(spec) - set(keys))
    if unknown or not spec.get("encoder"):
        raise ValueError(
            f"{name} 'new_model': needs 'encoder' (a pretrained encoder directory or cached hub id); "
            f"allowed keys: {', '.join(keys)}" + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return dict(spec)


def check_model_source(name: str, model, new_model, model_kind: str, new_model_example: str) -> None:
    """Exactly one of ``model`` (a checkpoint to load) and ``new_model`` (a model to build for training)."""
    from pathlib import Path

    if (model is None) == (new_model is None):
        raise ValueError(
            f"{name}: give exactly one of 'model' ({model_kind}) and 'new_model' (e.g. {new_model_example} "
            "to train a new GLiNER on a base encoder)."
        )
    if model is not None and (not isinstance(model, (str, Path)) or not str(model).strip()):
        raise ValueError(f"{name}: 'model' must be {model_kind}.")


def build_new_checkpoint(name: str, spec: Dict[str, Any]):
    """A new GLiNER on the base encoder(s) ``spec`` names; a local encoder path that does not exist is an error."""
    from ..modeling.new_model import new_checkpoint

    for key in ("encoder", "label_encoder", "decoder"):
        where = spec.get(key)
        if where and str(where).startswith((".", "/", "~")) and not Path(where).expanduser().is_dir():
            raise ValueError(f"{name} 'new_model.{key}': encoder directory {where!r} does not exist.")
    return new_checkpoint(**spec)


def label_data_of(names: List[str], texts: List[str]):
    """Labels as ``initialize(labels=...)`` takes them back: the names, or name -> text when a
    label reads as something else than its name."""
    return list(names) if list(names) == list(texts) else dict(zip(names, texts))


def labels_by_corpus(texts, labels_of) -> Dict[str, List[str]]:
    """corpus name ('' when unknown) -> sorted labels seen in it; ``labels_of(text)`` lists a text's labels."""
    by_corpus: Dict[str, set] = {}
    for text in texts:
        by_corpus.setdefault(text.corpus or "", set()).update(labels_of(text))
    return {corpus: sorted(labels) for corpus, labels in by_corpus.items()}


def saved_field(found: Dict[str, Path], key: str) -> Optional[Path]:
    """The path ``from_disk`` found for field ``key``, if it was written."""
    path = found.get(key)
    return path if path is not None and path.exists() else None


class TrainingSteps:
    """``update`` and ``get_loss`` of every trainable gliner pipe (spaCy's ``TrainablePipe`` API).

    A pipe provides ``name``, ``_training_batch(examples, for_update)`` (None when the examples
    hold nothing to learn from), ``_train_step(batch)`` (one step of its own optimizer, returning
    the loss), ``_batch_loss(batch)`` (a loss tensor) and ``_after_update()``.
    """

    @property
    def is_trainable(self) -> bool:
        return True

    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd=None, losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """One training step on a batch of examples (the component's own AdamW; spaCy's ``sgd``
        is not used because the encoders and the heads learn at separate rates)."""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        batch = self._training_batch(examples, for_update=True)
        if batch is None:
            return losses
        losses[self.name] += self._train_step(batch)
        self._after_update()
        return losses

    def get_loss(self, examples: Iterable[Example]) -> float:
        """The training loss on these examples, without updating (e.g. for a dev set)."""
        import torch

        batch = self._training_batch(examples, for_update=False)
        if batch is None:
            return 0.0
        with torch.no_grad():
            return float(self._batch_loss(batch).item())

    def _after_update(self) -> None:
        """What an update makes stale (e.g. cached label vectors)."""


class TrainableGliner(TrainingSteps):
    """Mixin of the span pipes (``gliner_ner``, ``gliner_relex``): their training step and gold reading.

    The pipe provides ``extractor``, ``name``, ``cfg["spans_key"]``, ``training`` (checked
    settings), ``label_descriptions`` and ``_make_trainer()`` -> (trainer, batch builder).
    """

    _trainer = None
    _batches = None
    _extractor = None
    # What ``cfg`` saves besides the settings: saved name -> attribute (a list or a dict).
    SAVED_ATTRIBUTES: Dict[str, str] = {"labels": "_label_names", "label_texts": "label_texts", "corpus_labels": "corpus_labels"}
    # Settings of how to run, not of what was learned: the pipe's config gives them, so
    # ``spacy.load(path, config=...)`` can change them; the saved copy is not read back.
    RUNTIME_SETTINGS: Tuple[str, ...] = ("backend", "onnx_quantize", "onnx_threads")

    @property
    def extractor(self):
        """The inference engine on the model, loaded (or built) on first use."""
        if self._extractor is None:
            self._load(self.source)
        return self._extractor

    # -- serialization ------------------------------------------------------------------------
    def to_disk(self, path: Union[str, Path], *, exclude=tuple()) -> None:
        """Fields as spaCy's pipes save them (``exclude`` leaves any out): ``cfg`` (labels,
        settings, corpus label sets) and ``checkpoint``, plus the pipe's :meth:`_more_writers`."""
        from ..modeling.checkpoint import save_checkpoint

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        serialize = {
            SETTINGS_FILE: lambda p: srsly.write_json(p, self._settings_to_save()),
            CHECKPOINT_DIR: lambda p: save_checkpoint(self.extractor.checkpoint, p),
            **self._more_writers(),
        }
        util.to_disk(path, serialize, exclude)

    def from_disk(self, path: Union[str, Path], *, exclude=tuple()):
        """Reads the fields ``to_disk`` wrote, but those in ``exclude``: without ``cfg`` the
        pipe keeps its labels and settings, without ``checkpoint`` its model."""
        found: Dict[str, Path] = {}
        readers = {
            SETTINGS_FILE: lambda p: self._restore_settings(srsly.read_json(p)),
            CHECKPOINT_DIR: lambda p: found.setdefault(CHECKPOINT_DIR, p),
            **{key: (lambda p, key=key: found.setdefault(key, p)) for key in self._more_writers()},
        }
        util.from_disk(Path(path), readers, exclude)
        if CHECKPOINT_DIR in found:
            self._load_saved(found)
        return self

    def _settings_to_save(self) -> Dict[str, Any]:
        saved = {key: getattr(self, attribute) for key, attribute in self.SAVED_ATTRIBUTES.items()}
        return {**saved, "cfg": self.cfg, "source": self.source}

    def _restore_settings(self, saved: Dict[str, Any]) -> None:
        for key, attribute in self.SAVED_ATTRIBUTES.items():
            kind = type(getattr(self, attribute))
            setattr(self, attribute, kind(saved[key]) if key in saved else kind())
        self.cfg.update({key: value for key, value in saved["cfg"].items() if key not in self.RUNTIME_SETTINGS})
        self.source = saved.get("source", self.source)

    def _checkpoint_on_device(self, source, new_model_spec: Dict[str, Any], text_tower: bool = True):
        """The checkpoint at ``source``, or (None) a new one built from ``new_model_spec``, on the model
        device; ``text_tower=False``: without the text tower (a shared transformer holds it)."""
        from .device import load_on_model_device, model_device

        if source is not None:
            return load_on_model_device(source, text_tower)
        checkpoint = build_new_checkpoint(self.name, new_model_spec)
        if not text_tower and checkpoint.config.bi_encoder:
            checkpoint.model.drop_text_tower()
        checkpoint.model.to(model_device())
        return checkpoint

    def _window_settings(self) -> Dict[str, Any]:
        return {key: self.cfg[key] for key in ("batch_size", "max_window_words", "window_overlap")}

    def _more_writers(self) -> Dict[str, Any]:
        """Fields besides ``cfg`` and ``checkpoint``: name -> writer of ``path / name``.
        ``onnx``: the ONNX export with ``backend: onnx`` (nothing with torch)."""
        return {ONNX_DIR: self._write_onnx}

    def _load_saved(self, found: Dict[str, Path]) -> None:
        """Load the saved checkpoint; ``found`` maps each field read to its path."""
        self._load(found[CHECKPOINT_DIR], onnx_dir=saved_field(found, ONNX_DIR))

    # -- ONNX Runtime backend (modeling/onnx_export.py) -------------------------------------------
    def _use_backend(self, extractor, onnx_dir: Optional[Path] = None) -> None:
        """With ``backend: onnx``, the extractor runs its encoders from the export in ``onnx_dir``
        (a saved pipeline's) when it matches the weights, else from a new one."""
        if self.cfg.get("backend", "torch") == "onnx":
            extractor.use_onnx(onnx_exports(self.cfg, self.name, onnx_dir))

    def _after_update(self) -> None:
        self.extractor.weights_changed()

    def _write_onnx(self, path: Path) -> None:
        if self.extractor.onnx_exports is not None:
            self.export_onnx(path)

    def export_onnx(self, path: Union[str, Path]) -> None:
        """Write the ONNX export of the current weights to ``path`` (what ``to_disk`` keeps as
        ``onnx/`` with ``backend: onnx``), exporting now if needed, whatever the backend."""
        extractor = self.extractor
        exports = extractor.onnx_exports or onnx_exports(self.cfg, self.name)
        exports.save(extractor.model, Path(path))

    def _detach_from_directory(self) -> None:
        if self._extractor is not None and self._extractor.onnx_exports is not None:
            self._extractor.onnx_exports.detach()
            self._extractor.weights_changed()  # the running view's files moved

    def _train_step(self, batch) -> float:
        return self._get_trainer().step(batch, self._label_vectors_fn(batch))

    def _batch_loss(self, batch):
        vectors = self._label_vectors_fn(batch)
        return self._get_trainer().loss(batch, vectors() if vectors else None)

    def _label_vectors_fn(self, batch):
        """Bi-encoders: a function computing the batch's label vectors with gradients; else None."""
        return None

    def _get_trainer(self):
        if self._trainer is None:
            self._trainer, self._batches = self._make_trainer()
        return self._trainer

    def _training_settings(self):
        return optimizer_settings(self.training)

    def _sampling_config(self):
        from ..training.label_sampling import LabelSamplingConfig

        t = self.training
        return LabelSamplingConfig(
            max_types=t["max_types"],
            max_neg_type_ratio=t["max_neg_type_ratio"],
            negative_rule=t["negative_rule"],
            random_drop=t["random_drop"],
            empty_negatives=t["empty_negatives"],
            mode="shared" if self.extractor.config.bi_encoder else "per_example",
        )

    def _training_batch(self, examples: Iterable[Example], for_update: bool = True):
        """The batch of these examples' gold texts, or None; the same whether for an update or a loss."""
        from ..training.batches import split_long_texts

        # What a batch skips is not counted: initialize reports the training data's problems once,
        # and spaCy's loop would repeat a per-batch report at every step.
        texts = [t for t in (self._gold_text(eg, Counter()) for eg in examples) if t is not None]
        self._get_trainer()
        extractor = self.extractor
        texts, _ = split_long_texts(
            texts, extractor.inputs, extractor.max_window_words, extractor.window_overlap,
            extractor.text_budget - extractor.prompt_budget,
        )
        if not texts:
            return None
        batch = self._batches.build(texts)
        return batch if batch.sample.num_labels else None

    def _read_training_texts(self, get_examples) -> Tuple[list, Counter]:
        texts, problems = [], Counter()
        for example in get_examples():
            text = self._gold_text(example, problems)
            if text is not None:
                texts.append(text)
        return texts, problems

    def _text_of(self, label: str) -> str:
        return self.label_descriptions.get(label, label)

    def _gold_text(self, example: Example, problems: Counter):
        return self._gold_entities(example, problems)[0]

    def _gold_entities(self, example: Example, problems: Counter):
        """(GoldText, reference token bounds -> index in its spans): words of the predicted doc and
        the gold spans (span group ``spans_key`` when the reference has one, else its entities)
        in word offsets; (None, {}) for an empty doc."""
        from ..training.batches import GoldText

        words, word_of = word_index(example.predicted)
        if not words:
            problems["empty documents"] += 1
            return None, {}
        reference = example.reference
        key = self.cfg["spans_key"]
        gold = list(reference.spans[key]) if key in reference.spans else list(reference.ents)
        spans, index = [], {}
        for span in gold:
            aligned = example.get_aligned_spans_y2x([span], allow_overlap=True)
            words_span = word_span(word_of, (t for a in aligned for t in range(a.start, a.end)))
            if words_span is None:
                problems["gold spans not aligned to the predicted tokens"] += 1
                continue
            index.setdefault((span.start, span.end), len(spans))
            spans.append((*words_span, self._text_of(span.label_)))
        meta = reference.user_data.get(META_KEY)
        corpus = meta.get("corpus") if isinstance(meta, dict) else None
        return GoldText(words, spans, corpus), index
