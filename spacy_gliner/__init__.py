"""spaCy components for GLiNER: zero-shot NER, relation extraction and entity linking."""

__version__ = "0.1.0"
