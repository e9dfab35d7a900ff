"""Bi-encoder label vectors, computed once per label text and reused for every document."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Union

import numpy as np
import torch

VECTORS_FILE = "vectors.npy"
INDEX_FILE = "texts.json"


class LabelVectorCache:
    """Maps label texts (what the label encoder reads) to finished label vectors.

    Vectors are stored on the CPU in ``dtype`` (float32 keeps exact parity with the reference;
    float16 halves memory for very large label sets) and moved to the model's device per use.
    """

    def __init__(self, dtype: str = "float32"):
        if dtype not in ("float32", "float16"):
            raise ValueError(f"label cache dtype must be 'float32' or 'float16', got {dtype!r}")
        self.dtype = dtype
        self._rows: Dict[str, int] = {}
        self._vectors: np.ndarray = np.zeros((0, 0), dtype=dtype)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, text: str) -> bool:
        return text in self._rows

    def missing(self, texts: Sequence[str]) -> List[str]:
        return list(dict.fromkeys(t for t in texts if t not in self._rows))

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=self.dtype)
        if len(self._rows) == 0:
            self._vectors = vectors.copy()
        else:
            self._vectors = np.concatenate([self._vectors, vectors], axis=0)
        for text in texts:
            self._rows[text] = len(self._rows)

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

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        return np.fromiter((self._rows[t] for t in texts), dtype=np.int64, count=len(texts))

    def vectors(self, texts: Sequence[str], device: Union[str, torch.device] = "cpu") -> torch.Tensor:
        rows = self.rows(texts)
        return torch.from_numpy(np.ascontiguousarray(self._vectors[rows])).to(device=device, dtype=torch.float32)

    def load_into_memory(self) -> None:
        """Stop reading from a memory-mapped file (its directory is about to be removed)."""
        self._vectors = np.array(self._vectors)

    def clear(self) -> None:
        self._rows.clear()
        self._vectors = np.zeros((0, 0), dtype=self.dtype)

    def to_disk(self, path: Union[str, Path]) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        ordered = sorted(self._rows, key=self._rows.get)
        (path / INDEX_FILE).write_text(json.dumps({"dtype": self.dtype, "texts": ordered}), encoding="utf8")
        np.save(path / VECTORS_FILE, self._vectors)

    def from_disk(self, path: Union[str, Path]) -> "LabelVectorCache":
        path = Path(path)
        index = json.loads((path / INDEX_FILE).read_text(encoding="utf8"))
        vectors = np.load(path / VECTORS_FILE, mmap_mode="r")
        if vectors.shape[0] != len(index["texts"]):
            raise ValueError(f"label cache at {path} is inconsistent: {vectors.shape[0]} vectors, {len(index['texts'])} texts")
        self.dtype = index["dtype"]
        self._rows = {text: i for i, text in enumerate(index["texts"])}
        self._vectors = vectors
        return self
