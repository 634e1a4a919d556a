"""ce handover gate calibration: the grid fit recovers a known gate, the blends at g = 0 / 1 are the head alone and
LMMSE alone, the model's own gate is restored, and the launch script runs end to end on a tiny model."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from icwm import tasks
from icwm.data.config import load_family
from icwm.data.shards import stable_seed
from icwm.eval.handover_gate import (A_GRID, B_GRID, BLENDS, GateConfig, blend_errors, fit_gate, gate_cost, gate_value,
                                     handover_of, pooled_db)
from icwm.infer import save_pretrained
from icwm.model import ModelConfig, build_model

ROOT = Path(__file__).resolve().parents[2]
FAMILY = ROOT / "configs" / "systems" / "debug.yaml"


def test_fit_recovers_a_known_gate():
    a0, b0 = -2.0, 1.3
    gs = [i / 64 for i in range(65)]
    db = {(j, g): -10.0 + (g - gate_value(a0, b0, j)) ** 2 for j in range(1, 17) for g in gs}
    a, b = fit_gate(db)
    assert abs(a - a0) <= 0.25 and abs(b - b0) <= 0.1
    assert gate_cost(db, a, b) <= gate_cost(db, -4.0, 1.84) - 0.1      # a clearly worse gate costs more


def test_cost_interpolates_linearly_on_the_blend_grid():
    """On the real 9-point grid, a table linear in g gives back the line at g(j), on and between grid points."""
    js = (1, 2, 4)
    db = {(j, g): 3.0 * j - 2.0 * g for j in js for g in BLENDS}
    for a, b in ((-1.5, 1.25), (0.0, 0.0), (-8.0, 0.0), (1.0, 4.0)):
        want = sum(3.0 * j - 2.0 * gate_value(a, b, j) for j in js)
        assert gate_cost(db, a, b) == pytest.approx(want, abs=1e-12)
    step = {(1, g): (0.0 if g < 0.5 else 1.0) for g in BLENDS}        # a step between 0.375 and 0.5
    assert gate_cost(step, 0.0, 0.0) == pytest.approx(1.0)             # g(1) = 0.5 exactly: the grid point's value
    assert gate_cost(step, math.log(0.4375 / 0.5625), 0.0) == pytest.approx(0.5)   # half-way between the two
    inner = {(1, g): g for g in (0.25, 0.5, 0.75)}
    assert gate_cost(inner, 8.0, 0.0) == pytest.approx(0.75) and gate_cost(inner, -8.0, 0.0) == pytest.approx(0.25)


def _debug_model(tmp_path: Path):
    cfg = ModelConfig.flavour("debug", ce_handover=True, k_max=4)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    return model, cfg


def test_blend_1_is_the_classical_lmmse_and_the_gate_is_restored(tmp_path):
    model, _ = _debug_model(tmp_path)
    system = load_family(FAMILY)[0]
    cfg = GateConfig(episodes=2, pairs=4, chunk=2, seed="t")
    ho = handover_of(model)
    before = (float(ho.gate_a.detach()), float(ho.gate_b.detach()))
    errs = blend_errors(model, [system], cfg)
    assert (float(ho.gate_a.detach()), float(ho.gate_b.detach())) == before     # the model's gate is put back
    assert set(errs) == {(j, g) for j in range(1, 4) for g in BLENDS}
    ce = tasks.get("ce")
    smp = ce.generate(system, 2, 4, torch.Generator().manual_seed(stable_seed("t", system.name, 0)))
    for j in (1, 3):     # g = 1 at pair j: LMMSE from pairs < j, i.e. the ce baseline with j demos
        first = {k: v[:, : j + 1] for k, v in smp.items()}
        ref = ce.loss({"h": ce.baselines(first)["lmmse"]["h"][:, -1]}, {"h": smp["h"][:, j]})
        torch.testing.assert_close(errs[(j, 1.0)], ref, rtol=1e-3, atol=1e-7)
    assert not torch.allclose(errs[(3, 0.0)], errs[(3, 1.0)])             # g = 0 is the head, another estimate
    assert all(math.isfinite(v) for v in pooled_db(errs).values())


def test_launch_calibrate_handover_end_to_end(tmp_path):
    model, cfg = _debug_model(tmp_path)
    with torch.no_grad():                                   # a gate off the fitting grid: reported as it is
        handover_of(model).gate_a.fill_(-3.1)
        handover_of(model).gate_b.fill_(0.93)
    save_pretrained(model, cfg, tmp_path / "m", {"post_training": "earlier note"})
    spec = importlib.util.spec_from_file_location("calibrate", ROOT / "launch" / "calibrate_handover.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "gate.json"
    assert mod.main([f"model={tmp_path / 'm'}", f"family={FAMILY}", "episodes=2", "pairs=3", "chunk=2",
                     f"out={out}", f"apply_to={tmp_path / 'm2'}"]) == 0
    res = json.loads(out.read_text())
    assert res["model"]["a"] == pytest.approx(-3.1) and res["model"]["b"] == pytest.approx(0.93)
    assert res["fitted"]["a"] in A_GRID and res["fitted"]["b"] in B_GRID
    assert len(res["pooled_db"]) == 2 * len(BLENDS)                            # j = 1, 2 x the blend grid
    from safetensors.torch import load_file
    state = load_file(str(tmp_path / "m2" / "model.safetensors"))
    assert float(state["heads.ce.handover.gate_a"]) == res["fitted"]["a"]
    meta = json.loads((tmp_path / "m2" / "metadata.json").read_text())
    assert meta["post_training"].startswith("earlier note; ce handover gate set to")
    assert mod.main([f"model={tmp_path / 'm'}", "episodes=0"]) == 2                # bad input: exit 2
    assert mod.main([f"model={tmp_path / 'm'}", f"family={tmp_path / 'none.yaml'}", f"out={tmp_path / 'x.json'}"]) == 2
    assert mod.main([f"model={tmp_path / 'none'}", f"out={tmp_path / 'x.json'}"]) == 2
    assert not (tmp_path / "x.json").exists()                                   # nothing written on a failed run


def test_model_without_handover_is_refused():
    with pytest.raises(ValueError, match="ce_handover"):
        handover_of(build_model(ModelConfig.flavour("debug", ce_handover=False)))
