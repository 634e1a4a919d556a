"""The nine physical-layer tasks. ``get(task_id)`` returns the task module (contract in docs/contracts.md)."""
from __future__ import annotations

import importlib
from types import ModuleType

TASKS: tuple[str, ...] = ("pre_sr", "pre_mm", "det", "ce", "cp", "pf", "bf", "de", "pe")


def get(task_id: str) -> ModuleType:
    """Task module for ``task_id``; ``ValueError`` naming the known ids otherwise."""
    if task_id not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task_id!r}")
    return importlib.import_module(f"icwm.tasks.{task_id}")


def x_keys(module: ModuleType, sample: dict) -> tuple[str, ...]:
    """Input keys of ``module`` present in ``sample``: ``X_KEYS``, minus ``LATENT_X`` for a latent-form sample."""
    from icwm.tasks.common import is_latent
    hidden = getattr(module, "LATENT_X", ()) if is_latent(sample) else ()
    return tuple(k for k in module.X_KEYS if k not in hidden)
