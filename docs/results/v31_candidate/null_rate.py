"""How often a paired given-form comparison of two runs flags a primary metric beyond z SE (systems as the unit).

Reads ``given_paired.py`` output (markdown) and counts the pooled-family primary-metric rows (k = 0 / 1 / 4 / 16, seen
/ unseen; the setups family has one system and no SE) beyond 2 and 3 SE. On two seeds of one recipe (a null
comparison) this is the rule's false-alarm rate:

    python docs/results/v17_latent/given_paired.py docs/results/v25_candidate/given/results.csv \
        docs/results/v25_candidate/seed1/given/results.csv > /tmp/null.md
    python docs/results/v31_candidate/null_rate.py /tmp/null.md docs/results/v30_candidate/given_paired_vs_v28.md
"""
from __future__ import annotations

import sys

PRIMARY = {"pre_sr": "sum_rate", "pre_mm": "min_sinr_db", "det": "ser", "ce": "nmse_mean_db", "cp": "nmse_mean_db",
           "pf": "nmse_mean_db", "bf": "gain_ratio", "de": "mae_m", "pe": "mae_db"}


def rates(path: str) -> tuple[int, int, int]:
    """(rows, rows beyond 2 SE, rows beyond 3 SE) of one given_paired.py table."""
    n = z2 = z3 = 0
    for line in open(path):
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) < 7 or PRIMARY.get(cells[0]) != cells[2] or cells[1] == "setups":
            continue
        try:
            z = abs(float(cells[4])) / float(cells[5])
        except (ValueError, ZeroDivisionError):
            continue
        if z != z:                                  # nan: a family with one system
            continue
        n, z2, z3 = n + 1, z2 + (z > 2), z3 + (z > 3)
    return n, z2, z3


if __name__ == "__main__":
    for p in sys.argv[1:]:
        n, z2, z3 = rates(p)
        print(f"{p}: {n} primary comparisons, {z2} beyond 2 SE, {z3} beyond 3 SE")
