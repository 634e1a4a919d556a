"""Candidate 31's ship rule (README, set before the run), applied mechanically; prints each check and the verdict.

(a) det's latent eta(1) at or above v28's on both families; det, ce and pf lose nothing at k >= 1: latent eta not
    below v28's by more than 2 SE (the two runs' SEs in quadrature), given-form primary metric not worse by more than
    2 paired SE and the largest change between earlier runs (below). (b) Every other task's given-form primary
    metric (k = 0 / 1 / 4 / 16, seen / unseen) not worse by more than 3 paired SE *and* by more than the largest
    change between earlier independent runs of the recipe (v24 -> v25, v25 -> its seed 1, v25 -> v26, v28 -> v30).
    Latent eta targets are reported, not judged. On candidate 30's files (a dry run; v30 then leaves the spread) it
    prints ce seen (a) and de seen (b) failures.

    python docs/results/v31_candidate/judge.py outputs/eval/v31_latent/results.csv outputs/eval/v31_given/results.csv
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
V28 = (f"{R}/v28_candidate/latent/results.csv", f"{R}/v28_candidate/given/results.csv")
EARLIER = [(f"{R}/v24_candidate/given/results.csv", f"{R}/v25_candidate/given/results.csv"),
           (f"{R}/v25_candidate/given/results.csv", f"{R}/v25_candidate/seed1/given/results.csv"),
           (f"{R}/v25_candidate/given/results.csv", f"{R}/v26_candidate/given/results.csv"),
           (f"{R}/v28_candidate/given/results.csv", f"{R}/v30_candidate/given/results.csv")]
# each task's primary metric and its direction (+1: higher is better), from its TaskSpec
PRIMARY = {t: (tasks.spec(t).primary, tasks.spec(t).direction) for t in tasks.TASKS}
TOUCHED = ("det", "ce", "pf")
FAMILIES = ("seen", "unseen")


def losses(pairs: dict, tasks: tuple[str, ...], ks: tuple[int, ...]) -> dict[tuple, tuple[float, float]]:
    """{(task, family, k): (loss in the metric's bad direction, paired SE)} of the primary metrics."""
    out = {}
    for task in tasks:
        metric, sign = PRIMARY[task]
        for fam in FAMILIES:
            for k in ks:
                if (task, fam, metric, k) in pairs:
                    mu, se, _ = pairs[(task, fam, metric, k)]
                    out[(task, fam, k)] = (-sign * mu, se)
    return out


def main(latent_path: str, given_path: str) -> None:
    ok = True
    old, new = load_eta(V28[0]), load_eta(latent_path)
    for fam in ("latent_seen", "latent_unseen"):
        e28, e31 = old[("det", fam)][("eta", 1)], new[("det", fam)][("eta", 1)]
        good = e31 >= e28
        ok &= good
        print(f"(a) det eta(1) {fam}: {e28:.3f} -> {e31:.3f} {'ok' if good else 'FAIL'}")
        for task in TOUCHED:
            for k in (1, 4, 16):
                a, b = old[(task, fam)], new[(task, fam)]
                drop, se = a[("eta", k)] - b[("eta", k)], math.hypot(a[("eta_se", k)], b[("eta_se", k)])
                if drop > 2 * se:
                    ok = False
                    print(f"(a) FAIL {task} {fam} eta({k}) {a[('eta', k)]:.3f} -> {b[('eta', k)]:.3f} "
                          f"(2 SE {2 * se:.3f})")
    spread: dict[tuple, float] = {}
    for a, b in EARLIER:
        if Path(b).resolve() == Path(given_path).resolve():     # a dry run on an earlier candidate: not its own spread
            continue
        for key, (loss, _) in losses(paired(a, b), tuple(PRIMARY), (0, 1, 4, 16)).items():
            spread[key] = max(spread.get(key, 0.0), abs(loss))
    given = paired(V28[1], given_path)
    for part, tasks, ks, z in (("(a)", TOUCHED, (1, 4, 16), 2), ("(b)", tuple(t for t in PRIMARY if t not in TOUCHED),
                                                                  (0, 1, 4, 16), 3)):
        for key, (loss, se) in losses(given, tasks, ks).items():
            if se > 0 and loss > z * se and loss > spread.get(key, 0.0):
                ok = False
                print(f"{part} FAIL given {' '.join(map(str, key))}: worse by {loss:.4g} ({z} SE {z * se:.3g}, "
                      f"earlier runs' largest change {spread.get(key, 0.0):.3g})")
    print("verdict:", "ship" if ok else "do not ship")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
