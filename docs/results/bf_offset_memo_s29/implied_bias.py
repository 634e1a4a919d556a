"""How biased are the demonstrations' implied panel offsets? Per system, over fresh groups: the mean and the
per-group median of (implied offset - true offset), and the share of pairs more than 5 deg off (outliers: the
dominant sub-6 path is not the mmWave best beam's, or it leaves the mmWave panel's field of view).

    OMP_NUM_THREADS=1 python docs/results/bf_offset_memo_s29/implied_bias.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "probe_memo_s25"))
from bank_readout import SEEN, UNSEEN, per_pair  # noqa: E402
from probe_memo import fresh_groups  # noqa: E402


def main() -> None:
    print("| system | nominal (deg) | mean bias (deg) | median bias (deg) | pairs off by > 5 deg |\n"
          "|---|---|---|---|---|")
    for files in (UNSEEN, SEEN):
        for name, g in fresh_groups(files, "bf", 32, 12345).items():
            p = per_pair(g)
            resid = p["true"] - p["nom"]
            err = p["implied"] - resid                                           # [group, pair]
            med = p["implied"].median(1).values - resid[:, 0]
            print(f"| {name} | {p['nom'][0, 0]:+.1f} | {err.mean():+.2f} | {med.mean():+.2f} | "
                  f"{(err.abs() > 5).float().mean():.2f} |", flush=True)


if __name__ == "__main__":
    main()
