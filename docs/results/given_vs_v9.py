"""Given form: icwm's pooled primary-style metric at k = 0 / 1 / 4 / 16 beside version 9's (docs/results/v9/EVAL.md).

Version 9's evaluation and `configs/eval/default.yaml` (32 episodes per system, seed 1) draw the same episodes (the
baselines' rows are equal), so the columns compare like with like. The metrics are the model card's: sum rate, min
SINR (dB), SER, NMSE dB of the mean, MAE (m, dB), gain ratio.

    python docs/results/given_vs_v9.py docs/results/v32_candidate/given/results.csv
"""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

METRIC = {"pre_sr": "sum_rate", "pre_mm": "min_sinr_db", "det": "ser", "ce": "nmse_mean_db", "cp": "nmse_mean_db",
          "pf": "nmse_mean_db", "de": "mae_m", "pe": "mae_db", "bf": "gain_ratio"}
KS = (0, 1, 4, 16)
V9 = Path(__file__).parent / "v9" / "EVAL.md"


def load_v9(path: Path = V9) -> dict[tuple[str, str, int], float]:
    """{(task, family, k): value} of icwm's rows in version 9's markdown tables."""
    out, task, fam, cols = {}, None, None, None
    for line in open(path):
        if m := re.match(r"^## (\w+)\s*$", line):
            task = m.group(1)
        elif m := re.match(r"^### (\w+)", line):
            fam = m.group(1)
        elif line.startswith("| method"):
            cols = [c.strip() for c in line.strip().strip("|").split("|")]
        elif task and cols and line.startswith("| icwm"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[1] == METRIC.get(task):
                for name, v in zip(cols[2:], cells[2:]):
                    if v not in ("-", ""):
                        out[(task, fam, int(name[2:]))] = float(v)
    return out


def load_new(path: str) -> dict[tuple[str, str, int], float]:
    """{(task, family, k): value} of icwm's pooled rows in an evaluation's results.csv."""
    with open(path) as f:
        return {(r["task"], r["family"], int(r["k"])): float(r["value"]) for r in csv.DictReader(f)
                if r["system"] == "all" and r["method"] == "icwm" and r["k"] and METRIC.get(r["task"]) == r["metric"]}


def main(path: str) -> None:
    old, new = load_v9(), load_new(path)
    print("| task (metric) | family | " + " | ".join(f"k = {k}: new / v9" for k in KS) + " |")
    print("|---|---|" + "---|" * len(KS))
    for task, metric in METRIC.items():
        for fam in ("seen", "unseen"):
            cells = [f"{new.get((task, fam, k), float('nan')):.4g} / {old.get((task, fam, k), float('nan')):.4g}"
                     for k in KS]
            print(f"| {task} ({metric}) | {fam} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: given_vs_v9.py GIVEN_RESULTS_CSV")
    main(sys.argv[1])
