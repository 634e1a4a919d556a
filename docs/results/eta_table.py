"""Markdown table of icwm's latent eta(0 / 1 / 4 / 16) +- SE at the largest k, one column per evaluation.

Reads the pooled rows (`system == all`, method icwm, metrics eta and eta_se) of each latent evaluation's
results.csv; rows are (task, family), unseen families first, tasks in the order the first file lists them. The
candidates' README tables are made with it:

    python docs/results/eta_table.py v24=docs/results/v24_candidate/latent/results.csv \\
        v25=outputs/eval/v25_latent/results.csv
"""
import csv
import math
import sys
from collections import defaultdict


def load(path: str) -> dict[tuple[str, str], dict[tuple[str, int], float]]:
    """{(task, family): {(metric, k): value}} of the pooled icwm eta / eta_se rows."""
    out: dict[tuple[str, str], dict[tuple[str, int], float]] = defaultdict(dict)
    for r in csv.DictReader(open(path)):
        if r["system"] == "all" and r["method"] == "icwm" and r["metric"] in ("eta", "eta_se"):
            out[(r["task"], r["family"])][(r["metric"], int(r["k"]))] = float(r["value"])
    return out


def cell(v: dict[tuple[str, int], float]) -> str:
    """'e0 / e1 / ... +- se(k_max)', or '-' when the task has no eta (nan)."""
    ks = sorted(k for m, k in v if m == "eta")
    if not ks or all(math.isnan(v[("eta", k)]) for k in ks):
        return "-"
    se = v.get(("eta_se", ks[-1]), float("nan"))
    return " / ".join(f"{v[('eta', k)]:.2f}" for k in ks) + f" +- {se:.2f}"


def main(args: list[str]) -> None:
    if not args or any("=" not in a for a in args):
        raise SystemExit("usage: eta_table.py NAME=results.csv [NAME=results.csv ...]")
    runs = [(name, load(path)) for name, path in (a.split("=", 1) for a in args)]
    order = list(dict.fromkeys(k for _, d in runs for k in d))  # dicts keep the files' row order
    keys = sorted(order, key=lambda t: ("unseen" not in t[1], t[1], order.index(t)))
    print("| task | family | " + " | ".join(name for name, _ in runs) + " |")
    print("|---|---|" + "---|" * len(runs))
    for task, fam in keys:
        cells = [cell(d.get((task, fam), {})) for _, d in runs]
        if any(c != "-" for c in cells):
            print(f"| {task} | {fam.removeprefix('latent_')} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
