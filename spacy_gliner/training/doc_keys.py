"""Where the corpus readers put gold data on a ``Doc`` (components read these keys too)."""

#: Span group that holds every gold span (nested / overlapping included).
SPANS_KEY = "sc"
#: ``doc.user_data`` key with provenance: source file, record index, and for
#: CoNLL files the document index and the sentence's token offset inside it.
META_KEY = "spacy_gliner.meta"
