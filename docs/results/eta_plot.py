"""Plot icwm's latent eta(k) +- SE of several evaluations side by side: one panel per task, unseen (solid) and seen
(dashed) families, one colour per evaluation; tasks without a finite eta (de: oracle and blind level) are left out.
Reads what ``eta_table.py`` reads (the pooled icwm eta rows):

    python docs/results/eta_plot.py --out docs/results/trunk_v25_latent/eta.png \\
        v25=outputs/eval/v25_latent/results.csv trunk=outputs/eval/trunk_v25_latent/results.csv
"""
import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eta_table import load  # noqa: E402


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="NAME=results.csv (a latent evaluation's)")
    ap.add_argument("--out", required=True, help="PNG path")
    args = ap.parse_args(argv)
    if any("=" not in r for r in args.runs):
        ap.error("runs: expected NAME=results.csv")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = [(name, load(path)) for name, path in (r.split("=", 1) for r in args.runs)]
    tasks = list(dict.fromkeys(t for _, d in runs for (t, _), v in d.items()   # tasks with a finite eta (not de)
                               if any(m == "eta" and not math.isnan(x) for (m, _), x in v.items())))
    cols, rows = 3, math.ceil(len(tasks) / 3)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for i, (name, d) in enumerate(runs):
            for fam, style in (("latent_unseen", "-"), ("latent_seen", "--")):
                v = d.get((task, fam), {})
                ks = sorted(k for m, k in v if m == "eta" and not math.isnan(v[("eta", k)]))
                if not ks:
                    continue
                x = list(range(len(ks)))
                eta = [v[("eta", k)] for k in ks]
                se = [v.get(("eta_se", k), 0.0) for k in ks]
                ax.errorbar(x, eta, yerr=se, ls=style, marker="o", ms=3, capsize=2, color=f"C{i}",
                            label=f"{name} {fam.removeprefix('latent_')}")
                ax.set_xticks(x, [str(k) for k in ks])
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.axhline(1.0, color="grey", lw=0.6, ls=":")
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("k (demonstrations)", fontsize=8)
        ax.set_ylabel("eta (0 blind, 1 oracle)", fontsize=8)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
