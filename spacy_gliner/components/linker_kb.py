"""Where the ``gliner_linker`` gets its knowledge base: the ``kb`` path of its config (opened by
:func:`spacy_gliner.kb.opening.open_kb`, with errors naming the component and the setting), or a
``kb_loader`` given to ``initialize`` / ``set_kb`` as spaCy's ``EntityLinker`` takes one.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Union

from spacy.language import Language
from spacy.util import registry
from spacy.vocab import Vocab

KB_SETTING = "its 'kb' setting"


def missing_kb_error(owner: str, source, setting: str = KB_SETTING) -> FileNotFoundError:
    path = Path(source).expanduser()
    return FileNotFoundError(
        f"{owner}: the knowledge base {str(path)!r} ({setting}) does not exist; expected a KB directory "
        "(with kb.json), a .jsonl file or an .sqlite file"
    )


def open_linker_kb(owner: str, source, setting: str = KB_SETTING):
    """The non-empty KB at ``source``; errors name ``owner`` (the component) and the ``setting`` it came from."""
    from ..kb.base import ensure_not_empty
    from ..kb.opening import open_kb

    if not Path(source).expanduser().exists():
        raise missing_kb_error(owner, source, setting)
    try:
        kb = open_kb(source)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{owner}: {err}") from None
    except (ValueError, KeyError) as err:
        raise ValueError(f"{owner}: cannot load the knowledge base {str(source)!r}: {err}") from None
    ensure_not_empty(kb, f"the '{owner}' component ({source})")
    return kb


def default_store_dir(source: Union[str, Path]) -> Path:
    """Where the entity embeddings live beside a KB: inside a KB directory, or ``<file>.gliner_embeddings``."""
    path = Path(source).expanduser()
    return path / "gliner_embeddings" if path.is_dir() else path.with_name(path.name + ".gliner_embeddings")


def building_from_config() -> bool:
    """Whether ``Language.from_config`` is on the call stack, i.e. the component is being built
    from a config that ``from_disk`` (spacy.load) or ``initialize`` (spacy train) completes."""
    target = Language.from_config.__func__.__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is target:
            return True
        frame = frame.f_back
    return False


class KBFromPath:
    """A ``kb_loader`` (``Callable[[Vocab], KB]``, spaCy's shape) opening the KB at ``path``;
    the path is kept so the linker can save it as its ``kb`` setting."""

    def __init__(self, path: Union[str, Path]):
        self.path = str(path)

    def __call__(self, vocab: Vocab):
        return open_linker_kb("kb_loader", self.path, "the kb_loader's path")


@registry.misc("spacy_gliner.KBFromPath.v1")
def make_kb_from_path(path: str) -> Callable[[Vocab], object]:
    """For ``[initialize.components.<linker>.kb_loader]``: the KB at ``path`` (directory, .jsonl or .sqlite)."""
    return KBFromPath(path)
