"""A throwaway Hugging Face hub cache, filled the way ``huggingface_hub`` fills it.

``models--org--name/blobs/<sha256>`` holds each file once, ``snapshots/<revision>/<file>`` links
to its blob, and ``refs/main`` names the revision; with ``HF_HUB_OFFLINE=1`` the libraries
resolve a hub id to that snapshot exactly as on a user's machine after a download.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def hub_cache_dir() -> Path:
    """The cache the libraries read: ``$HF_HOME/hub`` (the test session points HF_HOME at a temp dir)."""
    return Path(os.environ["HF_HOME"]) / "hub"


def revision_for(repo_id: str) -> str:
    """A stable 40-hex commit id per repo, like the hub's."""
    return hashlib.sha1(repo_id.encode("utf8")).hexdigest()


def place_in_hub_cache(repo_id: str, files: Path, cache: Path = None) -> Path:
    """Store every file under ``files`` as repo ``repo_id``'s snapshot; returns the snapshot dir."""
    cache = cache or hub_cache_dir()
    org, name = repo_id.split("/")
    root = cache / f"models--{org}--{name}"
    revision = revision_for(repo_id)
    snapshot = root / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)
    for source in sorted(p for p in Path(files).rglob("*") if p.is_file()):
        data = source.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        target = snapshot / source.relative_to(files)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, target.parent), target)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    return snapshot
