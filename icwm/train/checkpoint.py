"""Atomic, resumable training checkpoints.

Layout (``out_dir/checkpoints``)::

    step_00000100/
        engine/...               DeepSpeed checkpoint (model, optimiser, LR scheduler, ZeRO partitions)
        config.yaml              resolved PretrainConfig
        manifest.json            every file above with its size in bytes (checked before loading)
        trainer_state.json       step, samples, tokens, parameter counts, DWA state, world size (written last)
        rank_states/rank00000.pt per rank: data position, RNG states (torch, cuda, numpy, python)
    latest                       text file naming the newest complete checkpoint (written last)

Every rank writes into ``.tmp-step_XXXXXXXX``; rank 0 renames it onto ``step_XXXXXXXX`` once all ranks are done
and only then replaces ``latest``, so a run killed at any moment leaves either the previous or the new complete
checkpoint. ``out_dir`` must be on a file system that every rank sees (one node, or shared storage).

Loading never unpickles arbitrary objects: DeepSpeed's files are read with ``torch.load(weights_only=True)``
(its checkpoint engine is replaced by ``SafeCheckpointEngine``, which allows only the few DeepSpeed classes its
state holds), so a planted pickle is refused (``UnsafeCheckpointError``). A checkpoint with a missing, truncated or
unreadable file is ``CorruptCheckpointError``; ``resume_checkpoint`` then falls back to the previous good one.
``RunLock`` keeps a second run out of an ``out_dir`` in use.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import OmegaConf

from icwm.config import check, to_yaml

LATEST, STATE, CONFIG, ENGINE_TAG, RANKS = "latest", "trainer_state.json", "config.yaml", "engine", "rank_states"
MANIFEST, LOCK = "manifest.json", ".lock"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names the checkpoint and the file."""


class CorruptCheckpointError(CheckpointError):
    """A file of the checkpoint is missing, truncated or unreadable (``resume=auto`` falls back)."""


class UnsafeCheckpointError(CheckpointError):
    """A file holds objects that a weights-only load refuses (a planted pickle); never falls back silently."""


class RunLockedError(ValueError):
    """Another live run holds ``out_dir``'s lock."""


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
        _write_text(tmp / MANIFEST, json.dumps(_inventory(tmp), indent=1, sort_keys=True))
        _write_text(tmp / STATE, json.dumps(trainer_state, indent=2, sort_keys=True))
        _replace_dir(tmp, final)
        _write_text(root / LATEST, final.name + "\n")
        _prune(root, keep_last, keep=final)
    _barrier()
    return final


def _inventory(path: Path) -> dict[str, int]:
    """Relative path -> size in bytes of every file under the checkpoint directory ``path``."""
    return {f.relative_to(path).as_posix(): f.stat().st_size for f in sorted(path.rglob("*")) if f.is_file()}


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


def _deepspeed_safe_globals() -> list:
    """The DeepSpeed classes its (ZeRO) optimiser state pickles: plain records, no code runs when rebuilding them."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address
    return [LossScaler, ZeroStageEnum, fragment_address]


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:300]


def safe_load(path: str | Path, map_location: Any = "cpu", ds_globals: bool = True) -> Any:
    """``torch.load(path, weights_only=True)``, DeepSpeed's state classes allowed when ``ds_globals``.

    Raises:
        UnsafeCheckpointError: the file holds other objects (a planted pickle): nothing of it was executed.
        CorruptCheckpointError: missing, truncated or otherwise unreadable file.
    """
    try:
        with torch.serialization.safe_globals(_deepspeed_safe_globals() if ds_globals else []):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise UnsafeCheckpointError(f"checkpoint file {path}: refused, it holds objects other than tensors and "
                                        f"plain containers (weights-only load: {_first_line(err)})") from None
        raise CorruptCheckpointError(f"checkpoint file {path}: unreadable ({_first_line(err)})") from err
    except (RuntimeError, OSError, EOFError) as err:
        raise CorruptCheckpointError(f"checkpoint file {path}: unreadable ({type(err).__name__}: "
                                     f"{_first_line(err)})") from err


class SafeCheckpointEngine:
    """DeepSpeed checkpoint engine whose ``load`` is ``safe_load`` (DeepSpeed 0.19's own uses
    ``weights_only=False``); saving and everything else is delegated to the engine it wraps."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def load(self, path: str, map_location: Any = None) -> Any:
        return safe_load(path, map_location)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def use_safe_loader(engine) -> None:
    """Route every file DeepSpeed's ``engine.load_checkpoint`` reads through ``safe_load`` (idempotent)."""
    if not isinstance(engine.checkpoint_engine, SafeCheckpointEngine):
        engine.checkpoint_engine = SafeCheckpointEngine(engine.checkpoint_engine)


def check_files(path: Path) -> None:
    """``CorruptCheckpointError`` naming the first file of ``path``'s manifest that is missing or has another size
    (checkpoints written before manifests existed pass)."""
    if not (path / MANIFEST).is_file():
        return
    try:
        files = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise CorruptCheckpointError(f"checkpoint {path}: unreadable {MANIFEST} ({_first_line(err)})") from err
    for rel, size in files.items():
        f = path / rel
        if not f.is_file():
            raise CorruptCheckpointError(f"checkpoint {path}: file {rel} is missing")
        if f.stat().st_size != size:
            raise CorruptCheckpointError(f"checkpoint {path}: file {rel} has {f.stat().st_size} bytes, the manifest "
                                         f"says {size} (truncated or replaced)")


def _read_state(path: Path) -> dict:
    try:
        return json.loads((path / STATE).read_text())
    except (OSError, ValueError) as err:
        raise CorruptCheckpointError(f"checkpoint {path}: unreadable {STATE} ({_first_line(err)})") from err


def load_checkpoint(engine, path: str | Path) -> tuple[dict, dict]:
    """Load a checkpoint into ``engine`` (weights-only, files checked against the manifest first); collective.

    Args:
        engine: the DeepSpeed engine (same model, ZeRO stage and world size as when saved).
        path: checkpoint directory.
    Returns:
        (trainer_state, this rank's rank_state).
    Raises:
        CorruptCheckpointError / UnsafeCheckpointError naming the file; ValueError for another world size.
    """
    path = Path(path)
    state = _read_state(path)
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    check(state.get("world_size") == world, "train.resume", f"a checkpoint saved with {world} ranks (data "
          "positions are per rank)", f"{path} (saved with {state.get('world_size')} ranks)")
    check_files(path)
    check_same_model(engine, path)
    use_safe_loader(engine)
    try:
        load_path, _ = engine.load_checkpoint(str(path), tag=ENGINE_TAG, load_optimizer_states=True,
                                              load_lr_scheduler_states=True)
    except (RuntimeError, OSError, EOFError, KeyError) as err:
        raise CorruptCheckpointError(f"checkpoint {path}: DeepSpeed state unreadable ({type(err).__name__}: "
                                     f"{_first_line(err)})") from err
    if load_path is None:
        raise CorruptCheckpointError(f"checkpoint {path}: no loadable DeepSpeed state under {path / ENGINE_TAG}")
    rank_state = safe_load(path / RANKS / f"rank{rank:05d}.pt", ds_globals=False)
    return state, rank_state


def check_same_model(engine, path: Path) -> None:
    """The model config the checkpoint was saved with (its ``config.yaml``) is this run's (``engine.module.cfg``).

    Raises:
        ValueError: ``train.resume`` naming each model field that differs, saved vs now (a run whose model changed
        midway is not described by one config; the weights' shapes may not fit either).
    """
    cfg = getattr(engine.module, "cfg", None)
    if not dataclasses.is_dataclass(cfg) or not (path / CONFIG).is_file():
        return
    saved = OmegaConf.to_container(OmegaConf.load(path / CONFIG)).get("model")
    if not isinstance(saved, dict):
        return
    now = OmegaConf.to_container(OmegaConf.create(to_yaml(cfg)))   # as save_checkpoint's config.yaml writes it
    differ = [f"model.{k}={saved.get(k)!r} (now {v!r})" for k, v in now.items() if k in saved and saved[k] != v]
    check(not differ, "train.resume", "a checkpoint of this run's model (use another train.out_dir, or "
          "train.resume=none to start afresh there)", f"{path} saved with {', '.join(differ)}")


def resume_candidates(resume: str, out_dir: str | Path) -> list[Path]:
    """Checkpoints to try in order: for ``"auto"`` the one ``find_resume`` picks, then the older complete ones
    newest first; an explicit directory alone; none for ``"none"`` or an empty ``out_dir``."""
    first = find_resume(resume, out_dir)
    if first is None or resume != "auto":
        return [] if first is None else [first]
    older = [p for p in reversed(complete_checkpoints(ckpt_root(out_dir))) if p.name < first.name]
    return [first, *older]


def _all_ranks(ok: bool, device: Any) -> bool:
    """Whether ``ok`` holds on every rank (collective when several ranks run)."""
    if not (torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
        return ok
    t = torch.tensor([1.0 if ok else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return bool(t.item() > 0)


@dataclass
class Resumed:
    """What ``resume_checkpoint`` loaded: the checkpoint, its states, and the newer ones skipped as corrupt."""

    path: Path
    state: dict
    rank_state: dict
    skipped: list[tuple[Path, str]]


def resume_checkpoint(engine, resume: str, out_dir: str | Path) -> Optional[Resumed]:
    """Load the checkpoint ``resume`` selects, falling back past corrupt ones (``"auto"`` only); collective.

    Returns:
        ``Resumed`` (``skipped`` lists the corrupt newer checkpoints with the reason), or ``None`` for a fresh start.
    Raises:
        CorruptCheckpointError: no candidate is loadable (each named with its reason).
        UnsafeCheckpointError: a file holds a planted pickle (no fallback: the directory was tampered with).
    """
    skipped: list[tuple[Path, str]] = []
    for path in resume_candidates(resume, out_dir):
        try:
            state, rank_state = load_checkpoint(engine, path)
            reason = ""
        except CorruptCheckpointError as err:
            reason = str(err)
        if _all_ranks(not reason, getattr(engine, "device", "cpu")):
            return Resumed(path, state, rank_state, skipped)
        skipped.append((path, reason or "unreadable on another rank"))
    if skipped:
        where = ckpt_root(out_dir) if resume == "auto" else resume
        raise CorruptCheckpointError(f"train.resume: no loadable checkpoint in {where} "
                                     f"({'; '.join(r for _, r in skipped)})")
    return None


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


def nonfinite_parameters(module: torch.nn.Module) -> list[str]:
    """Names of ``module``'s parameters holding NaN / inf (this rank's partition under ZeRO-3)."""
    return [name for name, p in module.named_parameters()
            if not torch.isfinite(getattr(p, "ds_tensor", p).detach()).all()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """One run per ``out_dir``: an exclusive ``flock`` on ``out_dir/.lock`` (holding the holder's pid) for the run's
    life. The kernel drops the lock when its holder dies, so a file left by a killed run is simply taken over; a
    lock still held but naming a dead pid (kept by a forked leftover) is broken. No-op where ``fcntl`` is absent."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LOCK
        self._file = None

    def acquire(self) -> "RunLock":
        """Take the lock; ``RunLockedError`` naming the lock file and the live holder's pid otherwise."""
        try:
            import fcntl
        except ImportError:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = self._try(fcntl)
        if holder.isdigit() and not _pid_alive(int(holder)):
            self.path.unlink(missing_ok=True)                  # stale: its holder is dead; a fresh file is ours
            holder = self._try(fcntl)
        if self._file is None:
            raise RunLockedError(f"train.out_dir: another run holds {self.path} (pid {holder or '?'}); wait for it "
                                 "to end, stop it, or choose another train.out_dir")
        return self

    def _try(self, fcntl) -> str:
        """One non-blocking attempt: on success write our pid and return ""; else return the holder's pid text."""
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            return holder
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return ""

    def release(self) -> None:
        """Drop the lock (the file stays; the next run takes it over)."""
        if self._file is not None:
            self._file.close()
            self._file = None
