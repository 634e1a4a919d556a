"""The nine physical-layer tasks. ``get(task_id)`` returns the task module, ``spec(task_id)`` its ``TaskSpec``
(contract in docs/contracts.md)."""
from __future__ import annotations

import importlib
from types import ModuleType

# Loads the submodule ``icwm.tasks.spec`` before ``def spec`` below rebinds the package attribute ``spec`` to the
# accessor: import from the submodule (``from icwm.tasks.taskspec import TaskSpec``), never ``icwm.tasks.spec.TaskSpec``.
from icwm.tasks.taskspec import TaskSpec

TASKS: tuple[str, ...] = ("pre_sr", "pre_mm", "det", "ce", "cp", "pf", "bf", "de", "pe")


def _module(task_id: str) -> ModuleType:
    """The module ``icwm.tasks.<task_id>`` (imported once, then cached); ``ValueError`` naming the known ids."""
    if task_id not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task_id!r}")
    return importlib.import_module(f"icwm.tasks.{task_id}")


def get(task_id: str) -> ModuleType:
    """Task module for ``task_id``; ``ValueError`` naming the known ids otherwise."""
    return _module(task_id)


def spec(task_id: str) -> TaskSpec:
    """The ``TaskSpec`` of ``task_id`` (its module's ``SPEC``); ``ValueError`` naming the known ids otherwise."""
    return _module(task_id).SPEC


def check_first_guess(field_name: str, task_ids: list[str]) -> None:
    """ValueError naming ``field_name`` unless every id in ``task_ids`` is a task whose spec has a first guess
    (``TaskSpec.first_guess``: a residual learned baseline starts from it); loads those task modules."""
    ok = tuple(t for t in TASKS if spec(t).first_guess)
    for t in task_ids:
        if t not in ok:
            raise ValueError(f"{field_name}: expected task ids among {ok} (a first guess in the label's form), "
                             f"got {t!r}")


def __getattr__(name: str) -> dict[str, TaskSpec]:
    """``SPECS``: task id -> ``TaskSpec`` in ``TASKS`` order, built on first use (keeps ``import icwm.tasks`` light:
    configuration modules import ``TASKS`` alone)."""
    if name != "SPECS":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    specs = {task_id: spec(task_id) for task_id in TASKS}
    globals()["SPECS"] = specs
    return specs


def x_keys(module: ModuleType, sample: dict) -> tuple[str, ...]:
    """Input keys of ``module`` present in ``sample``: ``X_KEYS``, minus ``LATENT_X`` for a latent-form sample."""
    from icwm.tasks.common import is_latent
    hidden = getattr(module, "LATENT_X", ()) if is_latent(sample) else ()
    return tuple(k for k in module.X_KEYS if k not in hidden)
