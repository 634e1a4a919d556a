"""Candidate 32's ship rule (README, set before the run), applied mechanically; prints each check and the verdict.

Candidate 32 is v31's recipe plus the inference option `model.probe_k0_nominal: [pre_sr, pre_mm]`, which training
never reads. (a) The run's weights equal v31's export tensor for tensor. (b) Every latent-form row equals v31's
(docs/results/v31_candidate/latent) except pre_sr / pre_mm at k = 0, the rows the option changes; every given-form row
equals v31's (no hidden latent there, so the option is idle). (c) pre_sr's and pre_mm's latent eta(0) is not below
blind by more than 2 SE on either family (the issue's k = 0 target; blind's eta is 0 by definition).

    python docs/results/v32_candidate/judge.py outputs/pretrain/small_v32/model outputs/eval/v32_latent/results.csv \
        outputs/eval/v32_given/results.csv
"""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from safetensors.torch import load_file

V31 = Path("docs/results/v31_candidate")
SHIPPED = Path("icwm/assets/icwm-small/model.safetensors")
OPTION_TASKS = ("pre_sr", "pre_mm")
RTOL = 1e-9     # the csv's values are printed to 10 significant digits


def rows(path: str | Path) -> dict[tuple, float]:
    """{(task, family, system, method, k, metric): value} of an evaluation's results.csv (k -1 for the methods that
    read no demonstrations, whose k is empty)."""
    with open(path) as f:
        return {(r["task"], r["family"], r["system"], r["method"], int(r["k"] or -1), r["metric"]): float(r["value"])
                for r in csv.DictReader(f)}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-12)


def check_weights(model_dir: str) -> bool:
    new, old = load_file(str(Path(model_dir) / "model.safetensors")), load_file(str(SHIPPED))
    diff = sorted(set(new) ^ set(old)) + [n for n in sorted(set(new) & set(old)) if not new[n].equal(old[n])]
    print(f"(a) weights: {len(new)} tensors, {len(diff)} differ from v31's {'ok' if not diff else 'FAIL'}")
    for name in diff[:10]:
        print(f"    {name}")
    return not diff


def check_rows(form: str, new_path: str, exempt) -> bool:
    new, old = rows(new_path), rows(V31 / form / "results.csv")
    keys = [key for key in old if not exempt(key)]
    bad = [key for key in keys if key not in new or not same(new[key], old[key])]
    print(f"(b) {form}: {len(keys)} rows compared, {len(bad)} differ from v31's {'ok' if not bad else 'FAIL'}")
    for key in bad[:10]:
        print(f"    {key}: {old[key]:.6g} -> {new.get(key, float('nan')):.6g}")
    return not bad


def check_k0(latent_path: str) -> bool:
    from eta_table import load           # docs/results/eta_table.py
    eta, ok = load(latent_path), True
    for task in OPTION_TASKS:
        for fam in ("latent_seen", "latent_unseen"):
            e, se = eta[(task, fam)][("eta", 0)], eta[(task, fam)][("eta_se", 0)]
            good = e >= -2 * se
            ok &= good
            print(f"(c) {task} {fam} eta(0) {e:+.3f} +- {se:.3f} {'ok' if good else 'FAIL'}")
    return ok


def exempt(key: tuple) -> bool:
    """Latent rows the option may change: pre_sr / pre_mm at k = 0 and the paired SEs that read them."""
    task, _, _, _, k, metric = key
    return task in OPTION_TASKS and (k == 0 or metric.endswith("_se_k0") or (k == 1 and metric.endswith("_se_step")))


def main(model_dir: str, latent_path: str, given_path: str) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1]))
    ok = check_weights(model_dir)
    ok &= check_rows("latent", latent_path, exempt)
    ok &= check_rows("given", given_path, lambda key: False)
    ok &= check_k0(latent_path)
    print("verdict:", "ship" if ok else "do not ship")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit("usage: judge.py MODEL_DIR LATENT_RESULTS_CSV GIVEN_RESULTS_CSV")
    main(*sys.argv[1:])
