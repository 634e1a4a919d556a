"""The "metric vs k" checks: paired standard errors of the model's change with k and the allowance they give."""
from __future__ import annotations

import math

import pytest
import torch

from icwm.eval import report as rep
from icwm.eval.config import EvalConfig
from icwm.eval.runner import ALL, COLUMNS, MODEL, SE_K0, SE_STEP, EvalResult, paired_se, to_rows


def _row(task, family, k, metric, value, method=MODEL, n=100):
    """A per-system row (the targets pool those); standard-error rows are read from the pooled (``all``) row."""
    system = ALL if metric.endswith((SE_STEP, SE_K0)) else "x"
    return dict(zip(COLUMNS, (task, family, system, method, k, metric, value, n)))


def test_paired_se_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(400, generator=g) + 0.5
    cur = {"err": base + 0.1 * torch.randn(400, generator=g), "nmse": base * (1 + 0.2 * torch.rand(400, generator=g))}
    ref = {"err": base.clone(), "nmse": base.clone()}
    cur["err"][3] = float("nan")                                    # dropped from both
    got = {name: (se, n) for name, se, n in paired_se(cur, ref)}
    ok = torch.isfinite(cur["err"])
    d = (cur["err"] - ref["err"])[ok].double()
    assert got["err"] == (pytest.approx(float(d.std() / math.sqrt(399))), 399)
    # dB of the mean: the delta method agrees with the spread of 10 log10(mean) over bootstrap resamples
    se_db = got["nmse_mean_db"][0]
    idx = torch.randint(0, 400, (2000, 400), generator=g)
    boot = 10 * torch.log10(cur["nmse"][idx].mean(1)) - 10 * torch.log10(ref["nmse"][idx].mean(1))
    assert se_db == pytest.approx(float(boot.std()), rel=0.1)


def test_to_rows_adds_the_model_step_and_k0_errors_only():
    v = lambda *xs: {"err": [torch.tensor(xs, dtype=torch.float32)]}          # noqa: E731
    values = {(MODEL, 0): v(1.0, 2.0, 3.0), (MODEL, 1): v(1.0, 2.5, 3.0), (MODEL, 4): v(2.0, 2.5, 3.0),
              ("knn", 1): v(5.0, 5.0, 5.0)}
    rows = {(r["method"], r["k"], r["metric"]): r["value"] for r in to_rows("de", "seen", ALL, values)}
    assert rows[MODEL, 1, "err" + SE_STEP] == pytest.approx(float(torch.tensor([0, .5, 0]).std() / math.sqrt(3)))
    assert rows[MODEL, 4, "err" + SE_STEP] == pytest.approx(float(torch.tensor([1., 0, 0]).std() / math.sqrt(3)))
    assert rows[MODEL, 4, "err" + SE_K0] == pytest.approx(float(torch.tensor([1., .5, 0]).std() / math.sqrt(3)))
    assert not any(m.endswith((SE_STEP, SE_K0)) for (meth, _, m) in rows if meth != MODEL)
    assert (MODEL, 0, "err" + SE_STEP) not in rows


@pytest.mark.parametrize("se,status", [(None, "FAIL"), (0.2, "FAIL"), (0.6, "PASS")])
def test_a_worse_step_within_two_paired_se_is_not_counted(se, status):
    """de seen: 40.0 -> 41.0 m at k = 1 (a step of -1 m against a 10 % tolerance of 0.5 m), 35 m at k = 16."""
    rows = [_row("de", "seen", k, "mae_m", val) for k, val in ((0, 40.0), (1, 41.0), (16, 35.0))]
    if se is not None:
        rows += [_row("de", "seen", k, "mae_m" + SE_STEP, se) for k in (1, 16)]
    res = EvalResult(rows, {"seen": []}, [0, 1, 16], [0, 1, 16])
    (t,) = rep.monotone_targets(res, EvalConfig().targets)
    assert t["status"] == status and t["value"] == pytest.approx(5.0) and "paired SE" in t["scope"]


def test_no_improvement_fails_whatever_the_errors():
    rows = [_row("de", "seen", k, "mae_m", val) for k, val in ((0, 40.0), (1, 39.0), (16, 40.5))]
    rows += [_row("de", "seen", k, "mae_m" + SE_STEP, 10.0) for k in (1, 16)]
    (t,) = rep.monotone_targets(EvalResult(rows, {"seen": []}, [0, 1, 16], [0, 1, 16]), EvalConfig().targets)
    assert t["status"] == "FAIL"


def test_bf_pe_are_checked_flat_with_their_sampling_error():
    """bf / pe: demos are other UEs of the cell; the check is 'no worse than k = 0' up to max(tol, 2 paired SE)."""
    cfg = EvalConfig().targets
    rows = [_row("pe", "seen", k, "nmse", val) for k, val in ((0, 1e-3), (1, 1.1e-3), (16, 1e-3))]  # +0.41 dB at 1
    rows += [_row("bf", "seen", k, "top1", val) for k, val in ((0, 0.15), (1, 0.13), (16, 0.15))]
    res = EvalResult(rows, {"seen": []}, [0, 1, 16], [0, 1, 16])
    t = {x["target"].split()[0]: x for x in rep.monotone_targets(res, cfg)}
    assert t["pe"]["status"] == "FAIL" and t["pe"]["value"] == pytest.approx(-10 * math.log10(1.1), rel=1e-6)
    assert t["bf"]["status"] == "FAIL" and "does not degrade" in t["bf"]["target"]
    rows += [_row("pe", "seen", k, "nmse_mean_db" + SE_K0, 0.25) for k in (1, 16)]
    rows += [_row("bf", "seen", k, "top1" + SE_K0, 0.006) for k in (1, 16)]
    t = {x["target"].split()[0]: x for x in rep.monotone_targets(EvalResult(rows, {"seen": []}, [0, 1, 16],
                                                                               [0, 1, 16]), cfg)}
    assert t["pe"]["status"] == "PASS" and t["pe"]["threshold"] == pytest.approx(-0.5)
    assert t["bf"]["status"] == "FAIL" and t["bf"]["threshold"] == pytest.approx(-0.012)


def test_standard_errors_stay_out_of_the_tables():
    rows = [{**_row("de", "seen", k, m, val), "system": ALL}
            for k, m, val in ((0, "mae_m", 40.0), (1, "mae_m", 39.0), (1, "mae_m" + SE_STEP, 0.5))]
    table = "\n".join(rep.task_table(EvalResult(rows, {"seen": []}, [0, 1], [0, 1]), "de", "seen"))
    assert "mae_m " in table and SE_STEP not in table
