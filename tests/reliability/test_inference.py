"""Hostile inputs to ``FewShotModel.predict`` (the shipped icwm-small): outputs are finite, or a ValueError names the
field and the accepted range; never NaN, never plausible zeros."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from icwm.infer import LABELS, POWER_DB, SNR_DB, FewShotModel


@pytest.fixture(scope="module")
def fsm() -> FewShotModel:
    return FewShotModel.from_pretrained()


def _c(*shape: int, seed: int = 0, db: float = 0.0) -> np.ndarray:
    """Unit-modulus entries with random phases, scaled to a mean power of exactly ``db`` dB per entry."""
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, shape)
    return (np.exp(1j * phase) * 10.0 ** (db / 20.0)).astype(np.complex64)


def _det(k: int = 2, snr: float = 15.0, db: float = 0.0) -> tuple[dict, dict]:
    demos = {"h": _c(k, 8, 4, seed=1, db=db), "y": _c(k, 6, 8, seed=2), "snr_db": np.full(k, 15.0, np.float32),
             "x": _c(k, 6, 4, seed=3)}
    return demos, {"h": _c(8, 4, seed=4, db=db), "y": _c(6, 8, seed=5), "snr_db": np.float32(snr)}


def _pre(k: int = 2, snr: float = 10.0, db: float = 0.0) -> tuple[dict, dict]:
    lam = np.full((k, 4, 2), 0.25, np.float32)
    demos = {"h": _c(k, 4, 16, seed=1, db=db), "snr_db": np.full(k, 10.0, np.float32), "lam_p": lam}
    return demos, {"h": _c(4, 16, seed=2, db=db), "snr_db": np.float32(snr)}


def _ce(k: int = 2, scale: float = 1.0) -> tuple[dict, dict]:
    r = np.random.default_rng(7)
    g = lambda *s: ((r.standard_normal(s) + 1j * r.standard_normal(s)) * np.sqrt(0.5) * scale).astype(np.complex64)  # noqa: E731
    demos = {"h_ls": g(k, 2, 4, 4), "snr_db": np.full(k, 10.0, np.float32), "h": g(k, 2, 16, 4)}
    return demos, {"h_ls": g(2, 4, 4), "snr_db": np.float32(10.0)}


def _sub6(task: str, k: int = 3, db: float = 0.0) -> tuple[dict, dict]:
    label = {"bf": np.array([3, 17, 200]), "de": np.full(3, 120.0, np.float32),
             "pe": np.full(3, 95.0, np.float32)}[task][:k]
    return {"h_sub6": _c(k, 32, 8, seed=1, db=db), **{{"bf": "beam", "de": "distance_m", "pe": "pathloss_db"}[task]:
                                                     label}}, {"h_sub6": _c(32, 8, seed=2, db=db)}


def _raises(fsm: FewShotModel, field: str, task: str, demos: dict | None, query: dict, *also: str) -> str:
    """Assert predict raises a ValueError whose message starts with ``field`` and contains ``also``."""
    with pytest.raises(ValueError) as info:
        fsm.predict(task, demos, query)
    msg = str(info.value)
    assert msg.startswith(field), msg
    assert all(a in msg for a in also), msg
    return msg


def _finite(out: dict) -> bool:
    return all(np.isfinite(v).all() for v in out.values())


def _plausible(task: str, out: dict, query: dict) -> bool:
    """Finite and a valid answer of its kind: precoders at the query's power 10^(snr/10) with lam_p columns on the
    simplex, hard decisions among the 16 QAM points and soft symbols (posterior means, near 0 at -40 dB) within the
    constellation's hull (|s| <= 3 sqrt(2 / 10)), beam scores a distribution whose argmax is the beam, a positive
    distance, a path loss in [20, 250] dB."""
    if not _finite(out):
        return False
    if task in ("pre_sr", "pre_mm"):
        lam = out["lam_p"]
        power = float(np.sum(np.abs(out["W"]) ** 2))
        return bool((lam >= 0).all() and np.allclose(lam.sum(0), 1.0, atol=1e-4)
                    and np.isclose(power, 10.0 ** (float(query["snr_db"]) / 10.0), rtol=1e-3))
    if task == "det":
        return bool((np.abs(out["x"]) <= 1.342).all() and ((out["x_idx"] >= 0) & (out["x_idx"] < 16)).all())
    if task == "bf":
        return bool(np.isclose(out["beam_scores"].sum(), 1.0, atol=1e-4) and out["beam"] == out["beam_scores"].argmax())
    return bool(out["distance_m"] > 0) if task == "de" else bool(20.0 <= out["pathloss_db"] <= 250.0)


def test_det_query_snr_minus_300_db_is_rejected_with_the_range(fsm):
    demos, query = _det(snr=-300.0)
    _raises(fsm, "query['snr_db']", "det", demos, query, "[-40, 60]", "-300")


def test_det_query_snr_1e6_db_is_rejected_with_the_range(fsm):
    _raises(fsm, "query['snr_db']", "det", None, _det(snr=1e6)[1], "[-40, 60]")


def test_pre_sr_demo_at_snr_1e6_db_is_rejected(fsm):
    demos, query = _pre()
    demos["snr_db"][1] = 1e6
    _raises(fsm, "demos['snr_db']", "pre_sr", demos, query, "[-40, 60]", "1000000")


@pytest.mark.parametrize("snr", SNR_DB)
@pytest.mark.parametrize("make,task", [(_det, "det"), (_pre, "pre_sr"), (_pre, "pre_mm")])
def test_snr_at_the_edges_of_the_range_gives_finite_outputs(fsm, make, task, snr):
    demos, query = make(snr=snr)
    demos["snr_db"][:] = snr
    assert _plausible(task, fsm.predict(task, demos, query), query)


def test_pre_sr_channels_scaled_by_1e18_are_rejected(fsm):
    _raises(fsm, "query['h']", "pre_sr", None, _pre(db=360.0)[1], "[-40, 40]", "360")


def test_det_channels_scaled_by_1e_minus_12_are_rejected(fsm):
    demos, query = _det(db=-240.0)
    _raises(fsm, "query['h']", "det", demos, query, "[-40, 40]", "-240")


def test_a_demo_channel_scaled_by_1e18_is_rejected(fsm):
    demos, query = _pre()
    demos["h"][1] *= np.float32(1e18)
    _raises(fsm, "demos['h']", "pre_sr", demos, query, "[-40, 40]")


@pytest.mark.parametrize("task", ["pre_sr", "det", "bf", "de", "pe"])
@pytest.mark.parametrize("edge", [0, 1])
def test_channel_power_at_the_edges_of_the_range_gives_finite_outputs(fsm, task, edge):
    lo, hi, _ = next(iter(POWER_DB[task].values()))
    db = (lo + 0.01, hi - 0.01)[edge]
    make = {"pre_sr": _pre, "det": _det}.get(task, lambda db: _sub6(task, db=db))
    demos, query = make(db=db)
    assert _plausible(task, fsm.predict(task, demos, query), query)


@pytest.mark.parametrize("scale", [1e18, 1e-12])
def test_ce_channels_scaled_are_normalised_and_the_answer_scales_with_them(fsm, scale):
    demos, query = _ce()
    ref = fsm.predict("ce", demos, query)["h"]
    d, q = _ce(scale=scale)
    out = fsm.predict("ce", d, q)["h"]
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out / scale, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())


def test_nan_in_a_later_demo_channel_is_rejected(fsm):
    demos, query = _det(k=3)
    demos["y"][2, 0, 0] = np.nan
    _raises(fsm, "demos['y']", "det", demos, query, "finite")


def test_inf_query_channel_is_rejected(fsm):
    demos, query = _sub6("bf")
    query["h_sub6"][0, 0] = np.inf
    _raises(fsm, "query['h_sub6']", "bf", demos, query, "finite")


def test_nan_demo_label_is_rejected(fsm):
    demos, query = _sub6("de")
    demos["distance_m"][1] = np.nan
    _raises(fsm, "demos['distance_m']", "de", demos, query, "finite")


def test_bf_beam_out_of_range_in_a_later_demo_is_rejected(fsm):
    demos, query = _sub6("bf")
    demos["beam"][2] = 256
    _raises(fsm, "beam", "bf", demos, query, "[0, 256)", "256")


def test_negative_bf_beam_in_a_later_demo_is_rejected(fsm):
    demos, query = _sub6("bf")
    demos["beam"][1] = -1
    _raises(fsm, "beam", "bf", demos, query, "[0, 256)", "-1")


def test_det_demo_symbols_out_of_range_are_rejected(fsm):
    demos, query = _det(k=3)
    demos["x"][2] *= 100
    _raises(fsm, "demos['x']", "det", demos, query, f"[0, {LABELS['x'][1]:g}]")


def test_pre_sr_demo_lam_p_outside_0_1_is_rejected(fsm):
    demos, query = _pre()
    demos["lam_p"][1, 0, 0] = 3.0
    _raises(fsm, "demos['lam_p']", "pre_sr", demos, query, "[0, 1]")


def test_pe_negative_demo_pathloss_is_rejected(fsm):
    demos, query = _sub6("pe")
    demos["pathloss_db"][2] = -5.0
    _raises(fsm, "demos['pathloss_db']", "pe", demos, query, "[0, 250]", "-5")


def test_ce_demo_label_far_from_its_inputs_power_is_rejected(fsm):
    demos, query = _ce()
    demos["h"][1] *= np.float32(1e18)
    _raises(fsm, "demos['h']", "ce", demos, query, "[-40, 40]")


def test_all_zero_ce_channels_are_rejected(fsm):
    _raises(fsm, "h_ls", "ce", None, {"h_ls": np.zeros((2, 4, 4), np.complex64), "snr_db": np.float32(10.0)},
            "non-zero")


class _NaNDet(torch.nn.Module):
    """Stands in for a network that breaks down: det predictions all NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch: dict) -> dict:
        return {"x": torch.full(batch["x"].shape, complex(float("nan"), 0.0), dtype=torch.complex64)}


def test_a_non_finite_model_output_raises_instead_of_zero_decisions(fsm):
    broken = FewShotModel(_NaNDet(), fsm.cfg)
    demos, query = _det()
    _raises(broken, "det output 'x'", "det", demos, query, "finite", "NaN")
