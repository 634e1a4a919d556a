"""How often a paired given-form comparison of two runs flags a task's primary metric beyond 2 and 3 SE.

Pooled-family rows (seen / unseen, k = 0 / 1 / 4 / 16) of ``given_paired.paired`` (systems as the unit; the setups
family has one system and no SE) for each task's primary metric (``judge.PRIMARY``, from its TaskSpec). On two seeds
of one recipe (a null comparison) this is the false-alarm rate of a 2- or 3-SE rule:

    python docs/results/v31_candidate/null_rate.py docs/results/v25_candidate/given/results.csv \
        docs/results/v25_candidate/seed1/given/results.csv
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from judge import FAMILIES, PRIMARY, paired     # noqa: E402


def rates(path_a: str, path_b: str) -> tuple[int, int, int]:
    """(rows, rows beyond 2 SE, rows beyond 3 SE) of B - A."""
    z = [abs(mu) / se for (task, fam, metric, _), (mu, se, _) in paired(path_a, path_b).items()
         if fam in FAMILIES and metric == PRIMARY[task][0] and se > 0]
    return len(z), sum(x > 2 for x in z), sum(x > 3 for x in z)


if __name__ == "__main__":
    n, z2, z3 = rates(sys.argv[1], sys.argv[2])
    print(f"{n} primary comparisons, {z2} beyond 2 SE, {z3} beyond 3 SE")
