"""System variants for the comparison curves: transmit power / SNR, number of users K, speed.

A sweep takes one seen system of a task and changes one field over a list of values; each variant is a system of
the family ``sweep_<name>`` with its ``sweep_value``. Precoding noise has unit variance, so the SNR of pre_sr /
pre_mm is the transmit power budget P in dB (docs/contracts.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from icwm.compare.config import SweepConfig
from icwm.config import check
from icwm.tasks.common import replace
from icwm.wireless.sysconfig import SystemConfig


@dataclass
class SweepUnit:
    """One sweep point: the family name, the task, the variant system and the swept value."""

    family: str
    task: str
    system: SystemConfig
    value: float


def variant(base: SystemConfig, fld: str, value: float) -> SystemConfig:
    """``base`` with ``fld`` set to ``value`` (a fixed range for snr_db / speed_kmh), renamed after the change."""
    if fld == "num_users":
        check(float(value).is_integer() and value >= 1, "sweeps.values", "integers >= 1 for num_users", value)
        change = {"num_users": int(value)}
    else:
        change = {fld: [float(value), float(value)]}
    return replace(base, name=f"{base.name}__{fld}_{value:g}", **change)


def pick_base(sweep: SweepConfig, seen: list[SystemConfig]) -> SystemConfig:
    """The swept system: ``sweep.base`` by name among the task's seen systems, or the first of them."""
    check(len(seen) > 0, f"sweeps.{sweep.name}", "a task with at least one seen system", [])
    if not sweep.base:
        return seen[0]
    named = [s for s in seen if s.name == sweep.base]
    check(len(named) == 1, f"sweeps.{sweep.name}.base", f"a system name among {[s.name for s in seen]}", sweep.base)
    return named[0]


def sweep_units(sweeps: list[SweepConfig], seen_of: dict[str, list[SystemConfig]]) -> list[SweepUnit]:
    """Every sweep point of every sweep and task.

    Args:
        sweeps: the sweep configs. seen_of: task -> its seen systems (the sweep's base is taken from them).
    """
    out = []
    for s in sweeps:
        for task in s.tasks:
            base = pick_base(s, seen_of.get(task, []))
            out += [SweepUnit(f"sweep_{s.name}", task, variant(base, s.param, v), float(v)) for v in s.values]
    return out
