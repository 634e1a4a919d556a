"""Few-shot demo: the shipped icwm-small model on an UNSEEN configuration, against WMMSE / ZF / optimal max-min.

    python launch/demo.py [--model DIR] [--system unseen_nt96] [--episodes 64] [--out outputs/demo]

For pre_sr and pre_mm it draws episodes of one unseen system (default: Nt = 96 antennas, a count absent from
training), hands the model k demonstration pairs (k = 0, 1, 2, 4, 8, 16) and the query, and scores its precoder
beside the classical ones on the same channels. Prints a table and writes ``demo.png`` and ``demo.csv``.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from icwm import tasks  # noqa: E402
from icwm.config import check, check_path, report  # noqa: E402
from icwm.data.config import load_family  # noqa: E402
from icwm.infer import FewShotModel  # noqa: E402

KS = (0, 1, 2, 4, 8, 16)
METRIC = {"pre_sr": ("sum_rate", "sum rate [bit/s/Hz]"), "pre_mm": ("min_sinr_db", "min SINR [dB]")}


def score(task: str, model: FewShotModel, sample: dict, ks: tuple[int, ...]) -> dict[str, float]:
    """Mean query metric of the model at each k and of each classical baseline. ``sample``: [episode, pair, ...]."""
    mod, (name, _) = tasks.get(task), METRIC[task]
    query = {k: v[:, -1] for k, v in sample.items()}
    out = {}
    for k in ks:
        demos = {key: sample[key][:, :k] for key in mod.X_KEYS + mod.Y_KEYS} if k else None
        pred = model.predict(task, demos, {key: query[key] for key in mod.X_KEYS})
        out[f"icwm k={k}"] = mod.metric({"W": pred["W"]}, query)[name].mean().item()
    for method, pred in mod.baselines(query).items():
        out[method] = mod.metric(pred, query)[name].mean().item()
    return out


def plot(results: dict[str, dict[str, float]], ks: tuple[int, ...], path: Path) -> None:
    """Metric vs k for the model, classical methods as horizontal lines, one panel per task."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4))
    for ax, (task, res) in zip(axes, results.items()):
        ax.plot(ks, [res[f"icwm k={k}"] for k in ks], "o-", label="icwm (in-context)")
        for i, (m, v) in enumerate((m, v) for m, v in res.items() if not m.startswith("icwm")):
            ax.axhline(v, ls="--", color=f"C{i + 1}", label=m)
        ax.set_xscale("symlog", linthresh=1)
        ax.set(xlabel="demonstrations k", ylabel=METRIC[task][1], title=task)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_csv(results: dict[str, dict[str, float]], path: Path) -> None:
    """Print the table and write it as CSV (task, method, metric, value)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "method", "metric", "value"])
        for task, res in results.items():
            print(f"\n{task} ({METRIC[task][1]})")
            for method, v in res.items():
                print(f"  {method:<12} {v:8.3f}")
                w.writerow([task, method, METRIC[task][0], f"{v:.6g}"])


def run(args: argparse.Namespace) -> Path:
    """Score the model and the classical methods on the unseen system; write demo.csv and demo.png to ``args.out``."""
    systems = {s.name: s for s in load_family(check_path(args.family, "--family", "file"))}
    check(args.system in systems, "--system", f"one of {sorted(systems)}", args.system)
    cfg, model = systems[args.system], FewShotModel.from_pretrained(args.model)
    ks = tuple(k for k in KS if k <= model.cfg.k_max)
    results = {}
    for task in METRIC:
        sample = tasks.get(task).generate(cfg, args.episodes, max(ks) + 1, torch.Generator().manual_seed(args.seed))
        results[task] = score(task, model, sample, ks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"\nUnseen system {cfg.name}: {cfg.scenario}, {cfg.carrier_hz / 1e9:g} GHz, Nt = {cfg.num_ant}, "
          f"K = {cfg.num_users}, SNR {cfg.snr_db} dB, {args.episodes} episodes")
    write_csv(results, out / "demo.csv")
    plot(results, ks, out / "demo.png")
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the demo; a bad path or value gives ``demo: <what> (<path>)`` and exit status 2."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: the shipped icwm-small)")
    ap.add_argument("--family", default="configs/systems/unseen.yaml")
    ap.add_argument("--system", default="unseen_nt96")
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default="outputs/demo")
    args = ap.parse_args(argv)
    try:
        check(args.episodes >= 1, "--episodes", "an integer >= 1", args.episodes)
        out = run(args)
    except (ValueError, OSError) as err:
        return report("demo", err)
    print(f"\nwrote {out / 'demo.csv'} and {out / 'demo.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
