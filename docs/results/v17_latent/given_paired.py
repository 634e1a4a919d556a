"""Paired per-system difference of icwm's given-form metrics between two evaluations (B - A), with its standard error.

For each (task, family, metric, k): the mean over the family's systems of B - A and the standard error of that mean
(systems as the unit; each system's value is its 32-episode mean). Rows with |z| > 2 are marked. Only the metrics a
report tabulates (no *_se_* columns, no per-step cp columns).

    python docs/results/v17_latent/given_paired.py docs/results/v15_given/results.csv \\
        docs/results/v17_latent/given/results.csv > docs/results/v17_latent/given_paired.md
"""
import csv
import math
import sys
from collections import defaultdict


def load(path: str) -> dict[tuple[str, str, str, str, str], float]:
    """icwm rows of a results.csv, per system (not the pooled 'all' rows): key (task, family, system, metric, k)."""
    out = {}
    for r in csv.DictReader(open(path)):
        if r["method"] == "icwm" and r["system"] != "all" and "_se_" not in r["metric"] and "_t" not in r["metric"]:
            out[(r["task"], r["family"], r["system"], r["metric"], r["k"])] = float(r["value"])
    return out


def paired(path_a: str, path_b: str) -> dict[tuple[str, str, str, int], tuple[float, float, int]]:
    """{(task, family, metric, k): (mean of B - A over the systems, its SE (nan for one system), systems)}."""
    a, b = load(path_a), load(path_b)
    diff = defaultdict(list)
    for key, va in a.items():
        if key in b:
            diff[(key[0], key[1], key[3], int(key[4]))].append(b[key] - va)
    out = {}
    for key, d in diff.items():
        n, mu = len(d), sum(d) / len(d)
        out[key] = (mu, math.sqrt(sum((x - mu) ** 2 for x in d) / (n - 1) / n) if n > 1 else float("nan"), n)
    return out


def main(path_a: str, path_b: str) -> None:
    print(f"B - A per system, mean +- SE over systems; A = {path_a}, B = {path_b}\n")
    print("| task | family | metric | k | B - A | SE | systems | abs(z) > 2 |")
    print("|---|---|---|---|---|---|---|---|")
    for (task, fam, metric, k), (mu, se, n) in sorted(paired(path_a, path_b).items()):
        flag = "yes" if se > 0 and abs(mu / se) > 2 else ""
        print(f"| {task} | {fam} | {metric} | {k} | {mu:+.4g} | {se:.3g} | {n} | {flag} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
