"""Configuration of the native in-context wireless model (ICWM) and its size flavours.

``ModelConfig`` is a plain dataclass, loadable with ``icwm.config.load_config`` (unknown keys are errors) and stored
as ``config.yaml`` beside every checkpoint. Derived values (``head_dim``, ``ffn_hidden``) are computed once in
``__post_init__``; they are plain attributes, not fields, so they never appear in (or are read from) YAML.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from icwm.config import check
from icwm.tasks import TASKS

POS_KINDS = ("rope", "learned")
DET_ANCHORS = ("lmmse", "ep")

# Size flavours: overrides of the defaults below. debug ~0.1 M params (tests), small a few M (CPU, shipped),
# base / large for GPUs.
FLAVOURS: dict[str, dict] = {
    "debug": dict(d_model=32, n_layers=2, n_heads=2, ffn_mult=2.0, k_max=16, grid_filter=True, demo_fit=True,
                  fit_half_width=8, det_anchor="ep", ce_handover=True),
    "small": dict(d_model=160, n_layers=6, n_heads=5, ffn_mult=3.0, k_max=16, grid_filter=True, demo_fit=True,
                  fit_half_width=8, det_anchor="ep", ce_handover=True),
    "base": dict(d_model=512, n_layers=12, n_heads=8, ffn_mult=4.0, k_max=32, grid_filter=True, demo_fit=True,
                  fit_half_width=8, det_anchor="ep", ce_handover=True),
    "large": dict(d_model=1024, n_layers=24, n_heads=16, ffn_mult=4.0, k_max=32, grid_filter=True, demo_fit=True,
                  fit_half_width=8, det_anchor="ep", ce_handover=True),
}


@dataclass
class ModelConfig:
    """Hyper-parameters of ``ICWM``.

    Tokeniser limits (``max_*``) bound the sizes a model accepts; anything up to them works without retraining,
    including values never seen in training, because the embedders are set-based (users, antennas) or padded to a
    fixed length (slots, time steps).
    """

    name: str = "custom"            # flavour name, for logs
    d_model: int = 64               # token width
    n_layers: int = 2               # transformer blocks
    n_heads: int = 4                # attention heads (d_model % n_heads == 0)
    ffn_mult: float = 4.0           # SwiGLU hidden width = ffn_mult * d_model (rounded up to a multiple of 8)
    dropout: float = 0.0            # residual / attention dropout
    pos: str = "rope"               # pair positions: "rope" (rotary over the pair index) or "learned"
    rope_base: float = 10000.0      # RoPE frequency base
    k_max: int = 16                 # most demonstrations per episode (k + 1 pairs in total)
    max_users: int = 64             # K limit (pre_*, det)
    max_ant: int = 1024             # Nt / Nr limit
    max_sc: int = 4096              # subcarrier limit (ce, cp, pf, bf, de, pe)
    max_slots: int = 16             # det: received slots per sample (padded to this length)
    max_time: int = 16              # ce / cp / pf: time steps per sample (padded to this length)
    sc_group: int = 4               # cp / pf: subcarriers per token
    pilot_spacing: int = 4          # ce: comb pilot spacing (subcarriers per token on the label side)
    sub6_group: int = 8             # bf / de / pe: sub-6 subcarriers per token
    n_ang_bins: int = 16            # bf / de / pe: fixed angular bins of the antenna-axis projection
    n_beams: int = 256              # bf: mmWave codebook size
    demo_attn: bool = False         # ce / cp / pf heads: per-antenna attention over the earlier pairs' labels
    grid_filter: bool = False       # ce / cp heads: context-generated linear filters on each antenna's inputs
    demo_fit: bool = False          # in-context fits to the earlier pairs: ce/cp filters (with grid_filter), pf band
                                    # map, de/pe ridge law, bf angle prior + beam votes
    fit_half_width: int = 2         # ce demo_fit: pilots on each side of a group's pilot among the fit's regressors
    ce_handover: bool = False       # ce: blend in LMMSE from the earlier pairs' covariance as k grows (handover.py)
    det_anchor: str = "lmmse"       # det: first guess the head corrects, "lmmse" or "ep" (expectation propagation)
    tasks: tuple[str, ...] = field(default_factory=lambda: TASKS)

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        check(self.d_model >= 8 and self.d_model % max(self.n_heads, 1) == 0, "model.d_model",
              "an integer >= 8 divisible by n_heads", (self.d_model, self.n_heads))
        check(self.n_heads >= 1 and (self.d_model // self.n_heads) % 2 == 0, "model.n_heads",
              "a head count giving an even head_dim (RoPE)", self.n_heads)
        check(self.n_layers >= 1, "model.n_layers", "an integer >= 1", self.n_layers)
        check(self.ffn_mult > 0, "model.ffn_mult", "a positive float", self.ffn_mult)
        check(0.0 <= self.dropout < 1.0, "model.dropout", "a float in [0, 1)", self.dropout)
        check(self.pos in POS_KINDS, "model.pos", f"one of {POS_KINDS}", self.pos)
        check(self.fit_half_width >= 0, "model.fit_half_width", "an integer >= 0", self.fit_half_width)
        check(self.det_anchor in DET_ANCHORS, "model.det_anchor", f"one of {DET_ANCHORS}", self.det_anchor)
        for name in ("k_max", "max_users", "max_ant", "max_sc", "max_slots", "max_time", "sc_group",
                     "pilot_spacing", "sub6_group", "n_ang_bins", "n_beams"):
            check(getattr(self, name) >= 1, f"model.{name}", "a positive integer", getattr(self, name))
        check(len(self.tasks) >= 1 and set(self.tasks) <= set(TASKS) and len(set(self.tasks)) == len(self.tasks),
              "model.tasks", f"distinct task ids out of {TASKS}", self.tasks)
        self.head_dim = self.d_model // self.n_heads
        self.ffn_hidden = 8 * -(-int(round(self.ffn_mult * self.d_model)) // 8)

    @classmethod
    def flavour(cls, name: str, **overrides) -> "ModelConfig":
        """The ``name`` flavour ("debug" | "small" | "base" | "large"), with optional field overrides."""
        check(name in FLAVOURS, "model.flavour", f"one of {tuple(FLAVOURS)}", name)
        return cls(**{"name": name, **FLAVOURS[name], **overrides})

    def replace(self, **changes) -> "ModelConfig":
        """A copy with fields changed (validation runs again)."""
        return dataclasses.replace(self, **changes)
