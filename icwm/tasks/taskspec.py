"""``TaskSpec``: what the rest of the code needs to know about a task, declared once in its module (``SPEC``).

The per-task tables elsewhere (input / label keys and dtypes of ``icwm.infer``, primary metrics of
``icwm.eval.eta``, ``icwm.eval.runner.CONTEXT_TASKS``) are derived from the specs, so a new task touches its own
module and one line of ``icwm.tasks.TASKS``. Light on purpose (no torch, no channel simulator): ``import icwm.tasks``
loads it, and configuration modules import ``icwm.tasks.TASKS``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from icwm.config import check

KINDS = ("c", "f", "i")              # complex64, float32, int64
Keys = dict[str, tuple[int, str]]    # key -> (natural rank: trailing dims per sample, kind: one of KINDS)


@dataclass(frozen=True)
class TaskSpec:
    """Inputs, labels, latent form and headline metric of one task (docs/contracts.md "Tasks").

    Args:
        id: the task id (its module ``icwm.tasks.<id>``).
        x: input key -> (rank, kind), in the task's order of inputs; rank = trailing dims per sample after
            ``[group, sample]`` (``h [user, ant]`` has rank 2, ``snr_db []`` rank 0); kind (``KINDS``) ``"c"``
            complex64, ``"f"`` float32, ``"i"`` int64.
        y: label key -> (rank, kind), as ``x``.
        primary: the metric reports rank methods by (a ``metric()`` key, or ``nmse_mean_db``: 10 log10 of the mean
            NMSE).
        direction: +1 when a larger ``primary`` is better, -1 when a smaller one is.
        latent_x: the inputs the latent form omits (a subset of ``x`` and of ``latent``).
        latent: the theta names of the latent form: ``generate()`` writes ``latent_<name>`` for each.
        eta_metric: the metric ICL efficiency is computed on, with the direction of ``primary``; "" (default):
            ``primary``.
        context: True when the given-form classical baselines read the episode's demonstrations.
        trivial: the weakest reference from the query alone, the bar a learned baseline must clear on the seen
            family (``icwm.compare.converge``): a ``baselines()`` entry, or ``zero`` / ``chance`` / ``nominal``
            (predictors defined in ``converge``).
        first_guess: a ``baselines()`` entry in the label's own form from the query alone that a learned baseline
            may refine (residual heads of ``icwm.compare.single_task`` and ``adapters_llm``); "" when there is none.
    """

    id: str
    x: Keys = field(hash=False)
    y: Keys = field(hash=False)
    primary: str
    direction: int
    latent_x: tuple[str, ...] = ()
    latent: tuple[str, ...] = ()
    eta_metric: str = ""
    context: bool = False
    trivial: str = "zero"
    first_guess: str = ""

    def __post_init__(self) -> None:
        check(isinstance(self.id, str) and self.id.isidentifier(), "TaskSpec.id", "a task id (identifier)", self.id)
        for name in ("x", "y"):
            object.__setattr__(self, name, _keys(f"{self.id}.{name}", getattr(self, name)))
        both = set(self.x) & set(self.y)
        check(not both, f"{self.id}.y", "keys distinct from the input keys", sorted(both))
        check(isinstance(self.primary, str) and bool(self.primary), f"{self.id}.primary", "a metric name",
              self.primary)
        check(self.direction in (1, -1) and not isinstance(self.direction, bool), f"{self.id}.direction",
              "+1 (larger is better) or -1 (smaller is better)", self.direction)
        object.__setattr__(self, "latent", _names(f"{self.id}.latent", self.latent))
        object.__setattr__(self, "latent_x", _names(f"{self.id}.latent_x", self.latent_x))
        for key in self.latent_x:
            check(key in self.x, f"{self.id}.latent_x", f"input keys among {self.x_keys}", key)
            check(key in self.latent, f"{self.id}.latent_x", f"inputs that are theta names {self.latent}", key)
        check(isinstance(self.eta_metric, str), f"{self.id}.eta_metric", "a metric name or ''", self.eta_metric)
        object.__setattr__(self, "eta_metric", self.eta_metric or self.primary)
        check(isinstance(self.context, bool), f"{self.id}.context", "True or False", self.context)
        check(isinstance(self.trivial, str) and self.trivial.isidentifier(), f"{self.id}.trivial",
              "a baseline name", self.trivial)
        check(self.first_guess in ("", self.trivial), f"{self.id}.first_guess",
              f"'' or the trivial baseline {self.trivial!r} (a first guess no learned method may fall below)",
              self.first_guess)

    @property
    def x_keys(self) -> tuple[str, ...]:
        """Input keys (the module's ``X_KEYS``)."""
        return tuple(self.x)

    @property
    def y_keys(self) -> tuple[str, ...]:
        """Label keys (the module's ``Y_KEYS``)."""
        return tuple(self.y)

    @property
    def latent_keys(self) -> tuple[str, ...]:
        """The theta fields of a latent-form sample: ``latent_<name>`` per ``latent`` name."""
        from icwm.tasks.common import LATENT_PREFIX   # common loads torch
        return tuple(LATENT_PREFIX + name for name in self.latent)


def _keys(field_name: str, keys: Keys) -> Keys:
    """A fresh ``{key: (rank, kind)}`` copy of ``keys`` after checking it; ValueError naming ``field_name``."""
    check(isinstance(keys, dict) and bool(keys), field_name, "a non-empty dict key -> (rank, kind)", keys)
    for key, value in keys.items():
        check(isinstance(key, str) and key.isidentifier(), field_name, "keys that are identifiers", key)
        ok = isinstance(value, tuple) and len(value) == 2
        check(ok and type(value[0]) is int and value[0] >= 0, f"{field_name}[{key!r}]",
              "(rank, kind) with an integer rank >= 0", value)
        check(value[1] in KINDS, f"{field_name}[{key!r}]", f"a kind among {KINDS}", value[1])
    return dict(keys)


def _names(field_name: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` as a tuple of distinct identifiers; ValueError naming ``field_name`` otherwise."""
    check(isinstance(names, (tuple, list)), field_name, "a tuple of names", names)
    names = tuple(names)
    for name in names:
        check(isinstance(name, str) and name.isidentifier(), field_name, "names that are identifiers", name)
    check(len(set(names)) == len(names), field_name, "distinct names", names)
    return names
