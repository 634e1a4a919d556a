"""Input checks of few-shot inference (``icwm.infer``): cross-key shapes, value ranges and the ce / cp / pf scale.

Every check raises ``ValueError`` naming the field (``icwm.config.check``). Inputs the latent form omits (a task's
``TaskSpec.latent_x``) are simply absent from the arrays checked here: their checks are skipped.
"""
from __future__ import annotations

import torch

from icwm import tasks
from icwm.config import check
from icwm.model import ModelConfig
from icwm.model.grid import KEYS as GRID_KEYS

# Accepted input ranges (ValueError outside, naming the field). Training draws snr_db in [-10, 32] dB; the embedders
# read snr_db / 20 and gains 10^(snr_db / 10) |h|^2, and the det first guess solves with noise 10^(-snr_db / 10):
# the windows keep every feature finite with a wide margin.
SNR_DB = (-40.0, 60.0)
_NORMALISED = (-40.0, 40.0, "a path-loss-normalised channel has E|h|^2 = 1, 0 dB")
POWER_DB: dict[str, dict[str, tuple[float, float, str]]] = {  # task -> key -> mean |.|^2 per entry per sample (dB)
    "pre_sr": {"h": _NORMALISED}, "pre_mm": {"h": _NORMALISED},
    "det": {"h": _NORMALISED, "y": (-60.0, 80.0, "y = h x + noise with unit-energy symbols")},
    **{t: {"h_sub6": (-100.0, 60.0, "path loss included, scaled by 10^(ref_gain_db / 20) = 100 dB")}
       for t in ("bf", "de", "pe")},
}
LABELS = {  # demo label key -> accepted range of its values (magnitudes for complex labels)
    "lam_p": (0.0, 1.0, "normalised optimal-structure parameters"),
    "x": (0.0, 10.0, "magnitudes of unit-energy symbols (16-QAM: <= 1.35)"),
    "distance_m": (1e-3, 1e5, "metres"), "pathloss_db": (0.0, 250.0, "dB"),
}
# ce / cp / pf are linear estimation problems (the answer scales with the channel): each episode is normalised to the
# training data's unit mean input power per entry (of its demonstrations' inputs; the query's at k = 0) and the
# outputs scaled back, so predict(c x) = c predict(x) for any scale c. Demo labels must lie within GRID_LABEL_DB of
# their episode's input power.
GRID_LABEL_DB = 40.0


def _limits(cfg: ModelConfig, *items: tuple[str, int, str]) -> None:
    """ValueError naming the field unless each (field, value, ModelConfig limit name) is within its limit."""
    for field, value, name in items:
        check(value <= getattr(cfg, name), field, f"<= model.{name} = {getattr(cfg, name)}", value)


def _check_det(x: dict, y: dict, cfg: ModelConfig) -> None:
    """det: y [slot, rx], h [rx, user] (absent in the latent form: the users come from the labels x)."""
    n_slot, n_rx = x["y"].shape[1:]
    if "h" in x:
        h_rx, n_user = x["h"].shape[1:]
        _limits(cfg, ("h (users)", n_user, "max_users"), ("h (rx)", h_rx, "max_ant"))
        check(n_rx == h_rx, "y", f"shape [slot, rx={h_rx}] (rx of h)", tuple(x["y"].shape[1:]))
    else:
        n_user = y["x"].shape[2]
        _limits(cfg, ("x (users)", n_user, "max_users"), ("y (rx)", n_rx, "max_ant"))
    _limits(cfg, ("y (slots)", n_slot, "max_slots"))
    check(y["x"].shape[1:] == (n_slot, n_user), "x", "shape [slot, user] (slots of y, users of h)",
          tuple(y["x"].shape[1:]))


def check_consistency(task: str, x: dict, y: dict, cfg: ModelConfig) -> None:
    """Cross-key shape checks of one (x, y) pair [B, ...] and the embedders' limits; ValueError naming the field.

    Args:
        x: the inputs given (without those the latent form omits); y: the labels (the query's are placeholders).
    """
    if task in ("pre_sr", "pre_mm"):
        n_user, n_ant = x["h"].shape[1:]
        _limits(cfg, ("h (users)", n_user, "max_users"), ("h (antennas)", n_ant, "max_ant"))
        check(y["lam_p"].shape[1:] == (n_user, 2), "lam_p", f"shape [user={n_user}, 2]", tuple(y["lam_p"].shape[1:]))
    elif task == "det":
        _check_det(x, y, cfg)
    elif task in GRID_KEYS:
        kx, ky = GRID_KEYS[task]
        (t_x, s_x, n_x), (t_y, s_y, n_y) = x[kx].shape[1:], y[ky].shape[1:]
        _limits(cfg, (kx, t_x, "max_time"), (ky, t_y, "max_time"), (kx, n_x, "max_ant"), (ky, s_y, "max_sc"))
        check(n_y == n_x, ky, f"{n_x} antennas (as {kx})", n_y)
        expect_s = -(-s_y // cfg.pilot_spacing) if task == "ce" else s_y
        check(s_x == expect_s, kx, f"{expect_s} subcarriers for a label band of {s_y}", s_x)
        check(task == "cp" or t_y == t_x, ky, f"{t_x} time steps (as {kx})", t_y)
    else:
        s6, a6 = x["h_sub6"].shape[1:]
        _limits(cfg, ("h_sub6 (subcarriers)", s6, "max_sc"), ("h_sub6 (antennas)", a6, "max_ant"))
        if task == "bf":
            b = y["beam"]
            ok = (b >= 0) & (b < cfg.n_beams)
            check(bool(ok.all()), "beam", f"indices in [0, {cfg.n_beams})", b[~ok].tolist()[:5])


def power_db(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """10 log10 of the mean |t|^2 over the last ``ndim`` dims, in float64 (no overflow for any float32 input)."""
    p = t.to(torch.complex128).abs().pow(2) if t.is_complex() else t.double().pow(2)
    return 10.0 * torch.log10(p.flatten(-ndim).mean(-1) if ndim else p)


def _within(v: torch.Tensor, field: str, lo: float, hi: float, what: str) -> None:
    """ValueError naming ``field`` unless every value of ``v`` lies in [lo, hi] (reports the first one outside)."""
    bad = ~((v >= lo) & (v <= hi))
    if bool(bad.any()):
        check(False, field, f"{what} within [{lo:g}, {hi:g}]", round(float(v[bad][0]), 2))


def check_ranges(task: str, arrays: dict[str, torch.Tensor], where: str) -> None:
    """Value ranges of one side's arrays [B, (k,) ...] (``where``: query / demos): ``snr_db`` in ``SNR_DB``, channel
    power per sample in ``POWER_DB``, labels in ``LABELS`` (the query's labels are placeholders and not passed; an
    input the latent form omits is absent and not checked)."""
    spec = {**tasks.spec(task).x, **tasks.spec(task).y}
    for key, t in arrays.items():
        field = f"{where}[{key!r}]"
        if key == "snr_db":
            _within(t, field, *SNR_DB, "an SNR in dB")
        elif key in POWER_DB.get(task, {}):
            lo, hi, what = POWER_DB[task][key]
            _within(power_db(t, spec[key][0]), field, lo, hi, f"mean |{key}|^2 per entry in dB ({what})")
        elif key in LABELS:
            lo, hi, what = LABELS[key]
            _within(t.abs() if t.is_complex() else t, field, lo, hi, f"values ({what})")


def grid_scale(task: str, q: dict, d: dict) -> tuple[dict, dict, torch.Tensor]:
    """ce / cp / pf: normalise each episode to unit mean power per entry of its demonstrations' inputs (of the
    query's at k = 0). With demonstrations the scale does not depend on the query, so one set of demonstrations is
    normalised once for any number of queries (``FewShotModel.context``).

    Args:
        q: query tensors [B, ...] (may be empty when ``d`` is not); d: demo tensors [B, k, ...] (empty for k = 0).
    Returns:
        (q, d, scale [B] float64): the channels (inputs and demo labels) divided by ``scale``, the inputs' RMS.
    Raises:
        ValueError: all-zero inputs, or demo labels more than ``GRID_LABEL_DB`` away from the inputs' power.
    """
    kx, ky = GRID_KEYS[task]
    n = tasks.spec(task).x[kx][0]
    src, field = (d[kx], f"{kx} (demos)") if d else (q[kx][:, None], f"{kx} (query)")
    p_db = 10.0 * torch.log10((10.0 ** (power_db(src, n) / 10.0)).mean(1))                    # [B]
    check(bool(torch.isfinite(p_db).all()), field, "a non-zero channel", "all-zero entries")
    if d:
        gap = power_db(d[ky], n) - p_db[:, None]                                               # [B, k]
        _within(gap, f"demos[{ky!r}]", -GRID_LABEL_DB, GRID_LABEL_DB,
                f"mean |{ky}|^2 per entry in dB relative to {kx}'s")
    scale = 10.0 ** (p_db / 20.0)                                                              # [B]
    return scale_grids(task, q, d, scale) + (scale,)


def scale_grids(task: str, q: dict, d: dict, scale: torch.Tensor) -> tuple[dict, dict]:
    """ce / cp / pf: the query's input [B, ...] and the demos' input and label [B, k, ...] divided by scale [B]."""
    kx, ky = GRID_KEYS[task]
    div = lambda t: (t / scale.view((-1,) + (1,) * (t.dim() - 1))).to(t.dtype)  # noqa: E731
    q = {**q, kx: div(q[kx])} if q else q
    d = {**d, kx: div(d[kx]), ky: div(d[ky])} if d else d
    return q, d


def check_finite(task: str, out: dict[str, torch.Tensor]) -> None:
    """Last guard: ValueError naming the output when the model produced NaN / inf (never pass them on)."""
    for key, v in out.items():
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            check(False, f"{task} output {key!r}", "finite values (these inputs are outside what the model handles)",
                  "NaN / inf")
