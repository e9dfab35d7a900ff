"""Corpus-scale annotation: ``python -m spacy_gliner annotate PIPELINE INPUT OUTPUT`` or
:func:`annotate`. Sources and shards in ``sources``, output records in ``records``, atomic shard
files and the resume manifest in ``outputs``, the engines in ``local_engine`` and ``ray_engine``."""
from .runner import RunSummary, annotate

__all__ = ["annotate", "RunSummary"]
