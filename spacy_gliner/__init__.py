"""spaCy components for GLiNER: zero-shot NER, relation extraction and entity linking."""

__version__ = "0.1.0"


def __getattr__(name):
    # spaCy imports this package whenever a Language is created (entry points), so the drawing
    # code loads only when ``spacy_gliner.render`` is first used.
    if name == "render":
        from .visualization import render

        return render
    raise AttributeError(f"module 'spacy_gliner' has no attribute {name!r}")
