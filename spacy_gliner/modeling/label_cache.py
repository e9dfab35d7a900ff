"""Bi-encoder label vectors, computed once per label text and reused for every document.

Built for label sets up to millions of entries: vectors are appended to a growable buffer
(amortised O(1) per label, no re-copy of everything per encoded batch), ``from_disk``
memory-maps the saved matrix (nothing is read until used), labels added to a loaded cache go to
a separate in-memory buffer beside the read-only map (the map is never copied), and ``to_disk``
streams the map and the additions into one file (a plain file copy when nothing was added).
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

VECTORS_FILE = "vectors.npy"
INDEX_FILE = "texts.json"
_WRITE_ROWS = 1 << 16  # rows per write when streaming a matrix to disk


class LabelVectorCache:
    """Maps label texts (what the label encoder reads) to finished label vectors.

    Vectors are stored on the CPU in ``dtype`` (float32 keeps exact parity with the reference;
    float16 halves memory and disk for very large label sets) and moved to the model's device,
    as float32, per use. Rows ``[0, len(base))`` live in ``base`` (possibly a read-only memory
    map); later rows in ``extra`` (an over-allocated in-memory buffer).
    """

    def __init__(self, dtype: str = "float32"):
        if dtype not in ("float32", "float16"):
            raise ValueError(f"label cache dtype must be 'float32' or 'float16', got {dtype!r}")
        self.dtype = dtype
        self._rows: Dict[str, int] = {}
        self._base: Optional[np.ndarray] = None
        self._extra: Optional[np.ndarray] = None
        self._n_extra = 0
        self.version = 0  # bumped on every change, so callers can memoise row lookups

    # -- size and lookup ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, text: str) -> bool:
        return text in self._rows

    @property
    def dim(self) -> int:
        for part in (self._base, self._extra):
            if part is not None:
                return part.shape[1]
        return 0

    @property
    def _n_base(self) -> int:
        return 0 if self._base is None else self._base.shape[0]

    @property
    def is_memory_mapped(self) -> bool:
        return isinstance(self._base, np.memmap)

    def missing(self, texts: Sequence[str]) -> List[str]:
        rows = self._rows
        return list(dict.fromkeys(t for t in texts if t not in rows))

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        rows = self._rows
        return np.fromiter((rows[t] for t in texts), dtype=np.int64, count=len(texts))

    # -- adding ---------------------------------------------------------------------------------
    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=self.dtype)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ValueError(f"expected ({len(texts)}, dim) vectors, got shape {vectors.shape}")
        if len(self._rows) and vectors.shape[1] != self.dim:
            raise ValueError(f"label vectors have dimension {vectors.shape[1]}, the cache {self.dim}")
        texts = list(texts)
        if len(set(texts)) != len(texts) or any(t in self._rows for t in texts):
            raise ValueError("label texts added to the cache must be new and distinct")
        n = len(texts)
        needed = self._n_extra + n
        if self._extra is None or needed > self._extra.shape[0]:
            capacity = max(needed, 2 * (0 if self._extra is None else self._extra.shape[0]), 1024)
            grown = np.empty((capacity, vectors.shape[1]), dtype=self.dtype)
            if self._n_extra:
                grown[: self._n_extra] = self._extra[: self._n_extra]
            self._extra = grown
        self._extra[self._n_extra : needed] = vectors
        self._n_extra = needed
        start = len(self._rows)
        self._rows.update(zip(texts, range(start, start + n)))
        self.version += 1

    def fill(
        self,
        texts: Sequence[str],
        encode: Callable[[List[str]], torch.Tensor],
        batch_size: int = 256,
        progress: bool = True,
    ) -> int:
        """Encode the texts not cached yet, in batches, with a progress bar for large sets."""
        todo = self.missing(texts)
        if not todo:
            return 0
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="Encoding labels", unit="label", disable=not progress or len(todo) < 2 * batch_size)
        for begin in range(0, len(todo), batch_size):
            chunk = todo[begin : begin + batch_size]
            self.add(chunk, encode(chunk).float().cpu().numpy())
            bar.update(len(chunk))
        bar.close()
        return len(todo)

    # -- reading ------------------------------------------------------------------------------
    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows`` (cache dtype), as a new contiguous array.

        A run of consecutive rows is sliced, not fancy-indexed (the common case: labels in the
        order they were added)."""
        rows = np.asarray(rows, dtype=np.int64)
        n_base = self._n_base
        out = np.empty((len(rows), self.dim), dtype=self.dtype)
        if len(rows) == 0:
            return out
        first, last = int(rows[0]), int(rows[-1])
        if last - first + 1 == len(rows) and (len(rows) < 2 or bool(np.all(np.diff(rows) == 1))):
            cut = min(max(n_base - first, 0), len(rows))
            if cut:
                out[:cut] = self._base[first : first + cut]
            if cut < len(rows):
                out[cut:] = self._extra[max(first - n_base, 0) : last - n_base + 1]
            return out
        in_base = rows < n_base
        if in_base.any():
            out[in_base] = self._base[rows[in_base]]
        if not in_base.all():
            out[~in_base] = self._extra[rows[~in_base] - n_base]
        return out

    def vectors(self, texts: Sequence[str], device: Union[str, torch.device] = "cpu") -> torch.Tensor:
        return self.vectors_for_rows(self.rows(texts), device)

    def vectors_for_rows(self, rows: np.ndarray, device: Union[str, torch.device] = "cpu") -> torch.Tensor:
        """float32 (len(rows), dim) tensor on ``device``."""
        return torch.from_numpy(self.gather(rows)).to(device=device, dtype=torch.float32)

    def stored_tensor(self, rows: np.ndarray) -> torch.Tensor:
        """CPU tensor of ``rows`` in the cache dtype, sharing memory with the cache (a memory map
        included) when they are consecutive rows of one part, else a gathered copy."""
        rows = np.asarray(rows, dtype=np.int64)
        n_base = self._n_base
        if len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows) and bool(np.all(np.diff(rows) == 1)):
            first, last = int(rows[0]), int(rows[-1])
            part = None
            if last < n_base:
                part = self._base[first : last + 1]
            elif first >= n_base:
                part = self._extra[first - n_base : last - n_base + 1]
            if part is not None:
                with warnings.catch_warnings():  # read-only memory map: the tensor is only read
                    warnings.simplefilter("ignore", UserWarning)
                    return torch.from_numpy(part)
        return torch.from_numpy(self.gather(rows))

    def matrix(self) -> np.ndarray:
        """All vectors in row order (a copy unless everything is in one part)."""
        if self._n_extra == 0:
            return self._base if self._base is not None else np.zeros((0, 0), dtype=self.dtype)
        if self._base is None:
            return self._extra[: self._n_extra]
        return np.concatenate([self._base, self._extra[: self._n_extra]], axis=0)

    # -- lifecycle ----------------------------------------------------------------------------
    def load_into_memory(self) -> None:
        """Stop reading from a memory-mapped file (its directory is about to be removed)."""
        if self.is_memory_mapped:
            self._base = np.array(self._base)

    def clear(self) -> None:
        self._rows = {}
        self._base = self._extra = None
        self._n_extra = 0
        self.version += 1

    def to_disk(self, path: Union[str, Path]) -> None:
        """``texts.json`` + ``vectors.npy``, written to temporary names then renamed, so saving
        over the directory this cache is memory-mapped from is safe."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        ordered = sorted(self._rows, key=self._rows.get) if self._n_base else list(self._rows)
        target, tmp = path / VECTORS_FILE, path / (VECTORS_FILE + ".tmp")
        source = getattr(self._base, "filename", None) if self.is_memory_mapped else None
        if not len(self._rows):
            with open(tmp, "wb") as handle:
                np.save(handle, np.zeros((0, 0), dtype=self.dtype))
        elif self._n_extra == 0 and source and _whole_file_map(self._base):
            shutil.copyfile(source, tmp)  # unchanged since loaded: a plain file copy
        else:
            shape = (len(self._rows), self.dim)
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.dtype, shape=shape)
            for part, offset, count in ((self._base, 0, self._n_base), (self._extra, self._n_base, self._n_extra)):
                for begin in range(0, count, _WRITE_ROWS):
                    end = min(begin + _WRITE_ROWS, count)
                    out[offset + begin : offset + end] = part[begin:end]
            out.flush()
            del out
        index_tmp = path / (INDEX_FILE + ".tmp")
        index_tmp.write_text(json.dumps({"dtype": self.dtype, "texts": ordered}), encoding="utf8")
        os.replace(tmp, target)
        os.replace(index_tmp, path / INDEX_FILE)

    def from_disk(self, path: Union[str, Path]) -> "LabelVectorCache":
        path = Path(path)
        index = json.loads((path / INDEX_FILE).read_text(encoding="utf8"))
        vectors = np.load(path / VECTORS_FILE, mmap_mode="r" if index["texts"] else None)
        if vectors.shape[0] != len(index["texts"]):
            raise ValueError(f"label cache at {path} is inconsistent: {vectors.shape[0]} vectors, {len(index['texts'])} texts")
        self.dtype = index["dtype"]
        self._rows = dict(zip(index["texts"], range(len(index["texts"]))))
        self._base = vectors if len(vectors) else None
        self._extra, self._n_extra = None, 0
        self.version += 1
        return self


def _whole_file_map(array: np.memmap) -> bool:
    """True when the memory map covers a complete .npy file as written by numpy (header + data)."""
    try:
        size = os.path.getsize(array.filename)
    except OSError:
        return False
    return size == array.offset + array.nbytes
