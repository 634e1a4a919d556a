"""Result caches of the comparison's slow parts, so that a rerun with an unchanged setup, or one comparison split
over several sessions, does each part once: trained single-task nets (``single_task.cache_dir``) and the test-time
fine-tuning section's per-system results (``ttft.cache_dir``). Trained LLM adapters have their own cache
(``icwm.compare.llm.cache_key``, ``llm.cache_dir``).

An entry is a folder ``<root>/<label>-<key[:16]>`` holding ``tensors.safetensors`` (optional) and ``entry.json``
(the full key and the entry's metadata), written last and atomically: a folder without a readable ``entry.json``
with the same key (a run killed mid-write, or another setup whose key shares the prefix) is not an entry, and is
overwritten. The key is the sha256 of everything that determines the result (``digest``); ``FORMAT`` is part of
it and is bumped when the meaning of a cached field changes.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

FORMAT = 1
ENTRY, TENSORS = "entry.json", "tensors.safetensors"


def digest(obj) -> str:
    """sha256 of ``obj``'s JSON (sorted keys; values JSON cannot hold are written with ``str``)."""
    text = json.dumps({"format": FORMAT, "obj": obj}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of named tensors: names, dtypes, shapes and bytes (e.g. a model's weights)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def entry_dir(root: str | Path, label: str, key: str) -> Path:
    """The folder of the entry ``label`` with ``key``."""
    return Path(root) / f"{label}-{key[:16]}"


def load(root: str | Path, label: str, key: str) -> Optional[tuple[dict, dict[str, torch.Tensor]]]:
    """(metadata, tensors) of the entry, or None when there is no complete entry with this key."""
    d = entry_dir(root, label, key)
    try:
        entry = json.loads((d / ENTRY).read_text())
    except (OSError, ValueError):
        return None
    if entry.get("key") != key:
        return None
    tensors = load_file(str(d / TENSORS)) if entry.get("tensors") else {}
    return entry["meta"], tensors


def save(root: str | Path, label: str, key: str, meta: dict, tensors: Optional[dict[str, torch.Tensor]] = None
         ) -> Path:
    """Write the entry (tensors first, ``entry.json`` last through a rename); returns its folder."""
    d = entry_dir(root, label, key)
    d.mkdir(parents=True, exist_ok=True)
    (d / ENTRY).unlink(missing_ok=True)                      # incomplete until the new entry.json lands
    if tensors:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(d / TENSORS))
    tmp = d / (ENTRY + ".tmp")
    tmp.write_text(json.dumps({"key": key, "tensors": bool(tensors), "meta": meta}, indent=1, default=float))
    os.replace(tmp, d / ENTRY)
    return d
