"""Candidate 33's ship rule (README, set before the run), applied mechanically; prints each check and the verdict.

Candidate 33 is v32's recipe with 11,000 optimiser steps instead of 9,000, the inference option
`model.probe_k0_unapplied_zero: [pe]` and `model.offset_stated_only: [bf]`. Against v32 (docs/results/v32_candidate):

(a) No given-form primary metric (each task, seen / unseen, k = 0 / 1 / 4 / 16) worse by more than 3 paired SE *and*
    by more than the largest change between earlier runs of the recipe (EARLIER; candidate 31's bound); pe at k = 0,
    which the option changes, not worse by more than 2 paired SE.
(b) No latent eta at k = 1 / 4 / 16 (each task, both families) below v32's by more than 3 SE (the two runs' SEs in
    quadrature) *and* by more than the largest change between the same earlier runs; every latent eta(0) within 2 SE
    of blind (the issue's k = 0 target).
(c) A gain on an open miss of the issue: a latent unseen eta(16) of pre_mm, pf or bf above v32's by more than 2 SE
    (quadrature), or a given-form k = 16 primary metric of ce, de or pe (the tasks behind v9) better than v32's by
    more than 2 paired SE and by more than the earlier runs' largest change on either family.
(d) The training run's wall time (passed in minutes) at most 150 (the issue's bound on the 2-core VM).

    python docs/results/v33_candidate/judge.py outputs/eval/v33_latent/results.csv \
        outputs/eval/v33_given/results.csv MINUTES
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parents[1]), str(Path(__file__).parents[1] / "v17_latent")]
from eta_table import load as load_eta          # noqa: E402
from given_paired import paired                 # noqa: E402

from icwm import tasks                          # noqa: E402

R = "docs/results"
V32 = (f"{R}/v32_candidate/latent/results.csv", f"{R}/v32_candidate/given/results.csv")
EARLIER = [(f"{R}/v24_candidate", f"{R}/v25_candidate"), (f"{R}/v25_candidate", f"{R}/v25_candidate/seed1"),
           (f"{R}/v25_candidate", f"{R}/v26_candidate"), (f"{R}/v28_candidate", f"{R}/v30_candidate")]
PRIMARY = {t: (tasks.spec(t).primary, tasks.spec(t).direction) for t in tasks.TASKS}   # +1: higher is better
FAMILIES = ("seen", "unseen")
LATENT_FAMILIES = ("latent_seen", "latent_unseen")
OPTION = ("pe", 0)          # (task, k) the inference option changes in the given form
MISSES_LATENT = ("pre_mm", "pf", "bf")
MISSES_GIVEN = ("ce", "de", "pe")
MAX_MINUTES = 150.0


def given_losses(pairs: dict) -> dict[tuple, tuple[float, float]]:
    """{(task, family, k): (change in the metric's bad direction, paired SE)} of the primary metrics."""
    out = {}
    for task, (metric, sign) in PRIMARY.items():
        for fam in FAMILIES:
            for k in (0, 1, 4, 16):
                if (task, fam, metric, k) in pairs:
                    mu, se, _ = pairs[(task, fam, metric, k)]
                    out[(task, fam, k)] = (-sign * mu, se)
    return out


def eta_drops(old: dict, new: dict, ks: tuple[int, ...]) -> dict[tuple, tuple[float, float]]:
    """{(task, family, k): (eta drop old -> new, the two SEs in quadrature)} where both runs have a finite eta."""
    out = {}
    for (task, fam), a in old.items():
        b = new.get((task, fam), {})
        for k in ks:
            if ("eta", k) in a and ("eta", k) in b and not math.isnan(a[("eta", k)] - b[("eta", k)]):
                out[(task, fam, k)] = (a[("eta", k)] - b[("eta", k)], math.hypot(a[("eta_se", k)], b[("eta_se", k)]))
    return out


def spreads() -> tuple[dict, dict]:
    """The largest |change| between the EARLIER runs: given-form primary metrics and latent eta, by (task, fam, k)."""
    given: dict[tuple, float] = {}
    latent: dict[tuple, float] = {}
    for a, b in EARLIER:
        for key, (v, _) in given_losses(paired(f"{a}/given/results.csv", f"{b}/given/results.csv")).items():
            given[key] = max(given.get(key, 0.0), abs(v))
        for key, (v, _) in eta_drops(load_eta(f"{a}/latent/results.csv"), load_eta(f"{b}/latent/results.csv"),
                                     (1, 4, 16)).items():
            latent[key] = max(latent.get(key, 0.0), abs(v))
    return given, latent


def main(latent_path: str, given_path: str, minutes: float) -> None:
    ok, gain = True, False
    spread_given, spread_latent = spreads()
    given = given_losses(paired(V32[1], given_path))
    for key, (loss, se) in given.items():
        if key[0] == OPTION[0] and key[2] == OPTION[1]:
            bad = se > 0 and loss > 2 * se
            print(f"(a) given {' '.join(map(str, key))} (the option): worse by {loss:+.4g}, 2 SE {2 * se:.3g}"
                  f" {'FAIL' if bad else 'ok'}")
        else:
            bad = se > 0 and loss > 3 * se and loss > spread_given.get(key, 0.0)
            if bad:
                print(f"(a) FAIL given {' '.join(map(str, key))}: worse by {loss:.4g} (3 SE {3 * se:.3g}, earlier "
                      f"runs' largest change {spread_given.get(key, 0.0):.3g})")
        ok &= not bad
        if key[0] in MISSES_GIVEN and key[2] == 16 and se > 0 and -loss > 2 * se:
            up = -loss > spread_given.get(key, 0.0)
            gain |= up
            print(f"(c) given {' '.join(map(str, key))}: better by {-loss:.4g} (2 SE {2 * se:.3g}, earlier runs' "
                  f"largest change {spread_given.get(key, 0.0):.3g}) {'gain' if up else 'no gain'}")
    old, new = load_eta(V32[0]), load_eta(latent_path)
    for key, (drop, se) in eta_drops(old, new, (1, 4, 16)).items():
        if drop > 3 * se and drop > spread_latent.get(key, 0.0):
            ok = False
            print(f"(b) FAIL latent {' '.join(map(str, key))}: eta down {drop:.3f} (3 SE {3 * se:.3f}, earlier runs' "
                  f"largest change {spread_latent.get(key, 0.0):.3f})")
        if key[0] in MISSES_LATENT and key[1] == "latent_unseen" and key[2] == 16:
            up = -drop > 2 * se
            gain |= up
            print(f"(c) latent {key[0]} unseen eta(16): {old[key[:2]][('eta', 16)]:.3f} -> "
                  f"{new[key[:2]][('eta', 16)]:.3f} (2 SE {2 * se:.3f}) {'gain' if up else 'no gain'}")
    for (task, fam), v in new.items():
        if fam in LATENT_FAMILIES and ("eta", 0) in v and not math.isnan(v[("eta", 0)]):
            if v[("eta", 0)] < -2 * v[("eta_se", 0)]:
                ok = False
                print(f"(b) FAIL latent {task} {fam} eta(0) {v[('eta', 0)]:+.3f} +- {v[('eta_se', 0)]:.3f}")
    print(f"(c) a gain on an open miss: {'yes' if gain else 'none'}")
    timely = minutes <= MAX_MINUTES
    print(f"(d) training wall time {minutes:.0f} min {'ok' if timely else 'FAIL'} (at most {MAX_MINUTES:.0f})")
    print("verdict:", "ship" if ok and gain and timely else "do not ship")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit("usage: judge.py LATENT_RESULTS_CSV GIVEN_RESULTS_CSV TRAINING_MINUTES")
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
