"""Atomic, resumable training checkpoints.

Layout (``out_dir/checkpoints``)::

    step_00000100/
        engine/...               DeepSpeed checkpoint (model, optimiser, LR scheduler, ZeRO partitions)
        config.yaml              resolved PretrainConfig
        trainer_state.json       step, samples, tokens, parameter counts, DWA state, world size
        rank_states/rank00000.pt per rank: data position, RNG states (torch, cuda, numpy, python)
    latest                       text file naming the newest complete checkpoint (written last)

Every rank writes into ``.tmp-step_XXXXXXXX``; rank 0 renames it onto ``step_XXXXXXXX`` once all ranks are done
and only then replaces ``latest``, so a run killed at any moment leaves either the previous or the new complete
checkpoint. ``out_dir`` must be on a file system that every rank sees (one node, or shared storage).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from icwm.config import check

LATEST, STATE, CONFIG, ENGINE_TAG, RANKS = "latest", "trainer_state.json", "config.yaml", "engine", "rank_states"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


def ckpt_root(out_dir: str | Path) -> Path:
    """``out_dir/checkpoints``."""
    return Path(out_dir) / "checkpoints"


def step_name(step: int) -> str:
    """Directory name of the checkpoint after optimiser step ``step``."""
    return f"step_{step:08d}"


def rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and accelerator), numpy and python, as weights-only-loadable objects."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": list(random.getstate()[1]), "python_version": random.getstate()[0],
             "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore ``rng_state()``."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (tmp file + fsync + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def complete_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / STATE).is_file()]
    return sorted(dirs, key=lambda p: p.name)


def save_checkpoint(engine, out_dir: str | Path, step: int, config_yaml: str, trainer_state: dict,
                    rank_state: dict, keep_last: int = 0) -> Path:
    """Save a complete checkpoint atomically; collective (every rank calls it).

    Args:
        engine: the DeepSpeed engine.
        out_dir: run directory (checkpoints go to ``out_dir/checkpoints``).
        step: optimiser steps done.
        config_yaml: resolved config text.
        trainer_state: JSON-serialisable loop state (identical on all ranks; rank 0 writes it).
        rank_state: this rank's state (data position, RNG), saved with ``torch.save``.
        keep_last: complete checkpoints to keep (0 = all).
    Returns:
        The checkpoint directory.
    """
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    root = ckpt_root(out_dir)
    final, tmp = root / step_name(step), root / f".tmp-{step_name(step)}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / RANKS).mkdir(parents=True)
    _barrier()
    engine.save_checkpoint(str(tmp), tag=ENGINE_TAG, save_latest=False)
    torch.save(rank_state, tmp / RANKS / f"rank{rank:05d}.pt")
    _barrier()
    if rank == 0:
        (tmp / CONFIG).write_text(config_yaml)
        _write_text(tmp / STATE, json.dumps(trainer_state, indent=2, sort_keys=True))
        _replace_dir(tmp, final)
        _write_text(root / LATEST, final.name + "\n")
        _prune(root, keep_last, keep=final)
    _barrier()
    return final


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` onto ``dst``, replacing an existing ``dst`` only after the rename succeeded."""
    old = dst.with_name(f".old-{dst.name}")
    if dst.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def _prune(root: Path, keep_last: int, keep: Path) -> None:
    if keep_last <= 0:
        return
    for p in complete_checkpoints(root)[:-keep_last]:
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)


def find_resume(resume: str, out_dir: str | Path) -> Optional[Path]:
    """Checkpoint to resume from.

    Args:
        resume: ``"none"`` (fresh start), ``"auto"`` (the checkpoint ``latest`` names, else the newest complete one,
            else fresh) or a checkpoint directory (must be complete).
        out_dir: run directory.
    Returns:
        The checkpoint directory, or ``None`` for a fresh start.
    """
    if resume == "none":
        return None
    if resume == "auto":
        root = ckpt_root(out_dir)
        pointer = root / LATEST
        if pointer.is_file():
            named = root / pointer.read_text().strip()
            if (named / STATE).is_file():
                return named
        found = complete_checkpoints(root)
        return found[-1] if found else None
    path = Path(resume)
    check((path / STATE).is_file(), "train.resume", "'auto', 'none' or a complete checkpoint directory "
          f"(with {STATE})", resume)
    return path


def load_checkpoint(engine, path: str | Path) -> tuple[dict, dict]:
    """Load a checkpoint into ``engine``; collective.

    Args:
        engine: the DeepSpeed engine (same model, ZeRO stage and world size as when saved).
        path: checkpoint directory.
    Returns:
        (trainer_state, this rank's rank_state).
    """
    path = Path(path)
    state = json.loads((path / STATE).read_text())
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    check(state["world_size"] == world, "train.resume", f"a checkpoint saved with {world} ranks (data positions "
          "are per rank)", f"{path} (saved with {state['world_size']} ranks)")
    load_path, _ = engine.load_checkpoint(str(path), tag=ENGINE_TAG, load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
    check(load_path is not None, "train.resume", "a loadable DeepSpeed checkpoint", str(path))
    rank_state = torch.load(path / RANKS / f"rank{rank:05d}.pt", map_location="cpu", weights_only=True)
    return state, rank_state


def init_weights(model: torch.nn.Module, path: str | Path) -> list[str]:
    """Start ``model`` from the weights of a ``save_pretrained`` directory (warm start of a fresh run).

    Parameters the directory lacks (modules added since it was written) keep their initialisation; a parameter the
    model lacks, or one whose shape differs, is an error naming it. Returns the names left at initialisation.
    """
    from icwm.infer import load_weights
    state = load_weights(Path(path), "train.init_from must name a directory written by save_pretrained")
    own = model.state_dict()
    extra = [k for k in state if k not in own]
    check(not extra, "train.init_from", "weights whose names all exist in the model", extra[:5])
    bad = [k for k, v in state.items() if v.shape != own[k].shape]
    check(not bad, "train.init_from", "weights with the model's shapes", [(k, tuple(state[k].shape)) for k in bad[:5]])
    missing = model.load_state_dict(state, strict=False).missing_keys
    return list(missing)
