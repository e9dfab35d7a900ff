"""Mention/alias normalisation shared by every lookup path.

Exact alias lookup and fuzzy n-gram lookup must normalise the KB side and the
query side with the *same* function, otherwise "U.S." in a document would never
meet "U.S." in the KB. Keeping it in one module makes that impossible to get
wrong by accident.
"""
from __future__ import annotations

import re
import unicodedata
from typing import List

# Anything that is not a letter, digit or whitespace after NFKC is treated as a
# separator: "Coca-Cola" == "coca cola", "U.S." == "u s", "AT&T" == "at t".
_NON_WORD = re.compile(r"[^\w\s]|_", flags=re.UNICODE)
_SPACES = re.compile(r"\s+", flags=re.UNICODE)


def normalize_mention(text: str) -> str:
    """Return the canonical lookup key for a mention or alias.

    Steps, in order (the order matters: NFKC first so that e.g. full-width
    letters and ligatures become plain letters before case folding):

    1. Unicode NFKC (compatibility composition: "ﬁ" -> "fi", "Ｆ" -> "F").
    2. Accent folding: decompose and drop combining marks ("Müller" -> "Muller"),
       because mentions in tweets and news often lose diacritics.
    3. ``str.casefold`` (stronger than lower: "ß" -> "ss").
    4. Punctuation and underscores become spaces; runs of whitespace collapse to
       one space; leading/trailing whitespace is removed.

    The result may be the empty string (e.g. for "!!!"); callers treat an empty
    key as "no candidates".
    """
    text = unicodedata.normalize("NFKC", text)
    decomposed = unicodedata.normalize("NFD", text)
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    text = unicodedata.normalize("NFC", text).casefold()
    text = _NON_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def char_ngrams(normalized: str, n: int = 3) -> List[str]:
    """Distinct character n-grams of an already normalised string.

    The string is padded with one space on each side so that word starts and
    ends produce their own grams ("paris" -> " pa", "par", ..., "is "), which
    makes short names and first-letter matches count. Strings shorter than
    ``n`` after padding yield the padded string itself so that every non-empty
    key has at least one gram. Order is first occurrence; duplicates removed
    because the fuzzy index uses binary term weights.
    """
    if not normalized:
        return []
    padded = f" {normalized} "
    if len(padded) <= n:
        return [padded]
    seen: dict[str, None] = {}
    for i in range(len(padded) - n + 1):
        seen.setdefault(padded[i : i + n], None)
    return list(seen)
