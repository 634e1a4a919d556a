"""Few-shot demo: the shipped icwm-small on an UNSEEN configuration whose SNR is hidden (latent form).

    python launch/demo.py [--model DIR] [--system prel_unseen_rma_3p5_ula12_k6] [--episodes 64] [--out outputs/demo]

Each episode is one cell at one SNR that no input states (../shared/ICL.md): the demonstrations are other channels
of the cell with their optimal (lambda, p) precoder structure, and only they reveal the SNR the precoder must be
designed for. For k = 0, 1, 2, 4, 8, 16 demonstrations it scores, on the same queries, the model (no weight
update) beside the classical methods of the latent form: ``oracle`` (WMMSE designed at the true SNR), ``blind``
(at the centre of the SNR range) and ``in_context`` (at the SNR fitted to the k demonstrations). Prints a table and
writes ``demo.png`` (sum rate and SNR-estimate error vs k) and ``demo.csv``.
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
from icwm.tasks import precoding_common as pc  # noqa: E402
from icwm.wireless import precoding  # noqa: E402

TASK = "pre_sr"
KS = (0, 1, 2, 4, 8, 16)
LINES = ("oracle", "blind")          # methods that do not read the demonstrations: horizontal lines


def take(sample: dict, k: int) -> dict:
    """The episodes with their first ``k`` demonstrations and the query: [E, k + 1, ...]."""
    return {key: torch.cat((v[:, :k], v[:, -1:]), 1) for key, v in sample.items()}


def score(model: FewShotModel, sample: dict, ks: tuple[int, ...]) -> dict[str, dict[int, float]]:
    """Mean query sum rate (bit/s/Hz) and mean absolute SNR-estimate error (dB) per method and k.

    ``sample``: latent episodes [E, pair, ...], the query last. Returns ``{row: {k: value}}``.
    """
    mod = tasks.get(TASK)
    x_keys, truth = tasks.x_keys(mod, sample), sample["latent_snr_db"][:, -1]
    query = {key: v[:, -1] for key, v in sample.items()}
    # a model trained with nominal values is told the range centre, as blind is
    nominal = {"snr_db": query["prior_snr_db"]} if "snr_db" in model.nominal_names(TASK) else None
    rows: dict[str, dict[int, float]] = {}
    for k in ks:
        sub = take(sample, k)
        demos = {key: sub[key][:, :k] for key in (*x_keys, *mod.Y_KEYS)} if k else None
        pred = model.predict(TASK, demos, {key: query[key] for key in x_keys}, nominal=nominal)
        rows.setdefault("icwm", {})[k] = mod.metric({"W": pred["W"]}, query)["sum_rate"].mean().item()
        rows.setdefault("icwm SNR error [dB]", {})[k] = (pred["estimated_snr_db"] - truth).abs().mean().item()
        for method, p in mod.baselines(sub).items():
            if method in LINES + ("in_context",):
                at_query = {"W": p["W"][:, -1]}                         # [E, pair, ant, user] -> the query's
                rows.setdefault(method, {})[k] = mod.metric(at_query, query)["sum_rate"].mean().item()
        fit = pc.in_context_snr_db(sub, precoding.fit_snr_db)
        rows.setdefault("in_context SNR error [dB]", {})[k] = (fit - truth).abs().mean().item()
    return rows


def plot(rows: dict[str, dict[int, float]], ks: tuple[int, ...], title: str, path: Path) -> None:
    """Sum rate vs k (model, classical in-context; oracle and blind as lines) and SNR-estimate error vs k."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, method in enumerate(("icwm", "in_context")):
        ax.plot(ks, [rows[method][k] for k in ks], "o-", color=f"C{i}",
                label="icwm (in-context, no weight update)" if method == "icwm" else "classical in-context (SNR fit)")
        ax2.plot(ks, [rows[f"{method} SNR error [dB]"][k] for k in ks], "o-", color=f"C{i}", label=method)
    for i, method in enumerate(LINES):
        ax.axhline(rows[method][ks[0]], ls="--", color=f"C{i + 2}", label=f"{method} (WMMSE at the "
                   + ("true SNR)" if method == "oracle" else "range centre)"))
    for a in (ax, ax2):
        a.set_xscale("symlog", linthresh=1)
        a.set_xlabel("demonstrations k")
        a.legend(fontsize=8)
    ax.set(ylabel="sum rate [bit/s/Hz]", title=title)
    ax2.set(ylabel="mean |SNR estimate - true SNR| [dB]", title="what the demonstrations taught")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_csv(rows: dict[str, dict[int, float]], path: Path) -> None:
    """Print the table and write it as CSV (row, k, value)."""
    ks = sorted(next(iter(rows.values())))
    print(f"\n{'':<28}" + "".join(f"k={k:<7}" for k in ks))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "k", "value"])
        for name, vals in rows.items():
            print(f"{name:<28}" + "".join(f"{vals[k]:<9.3f}" for k in ks))
            w.writerows([name, k, f"{vals[k]:.6g}"] for k in ks)


def run(args: argparse.Namespace) -> Path:
    """Score the model and the classical methods on the unseen system; write demo.csv and demo.png to ``args.out``."""
    systems = {s.name: s for s in load_family(check_path(args.family, "--family", "file"))}
    check(args.system in systems, "--system", f"one of {sorted(systems)}", args.system)
    cfg, model = systems[args.system], FewShotModel.from_pretrained(args.model)
    check(cfg.form == "latent", "--system", "a latent-form system (form: latent)", cfg.form)
    ks = tuple(k for k in KS if k <= model.cfg.k_max)
    sample = tasks.get(TASK).generate(cfg, args.episodes, max(ks) + 1, torch.Generator().manual_seed(args.seed))
    rows = score(model, sample, ks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = (f"unseen {cfg.scenario.upper()} {cfg.carrier_hz / 1e9:g} GHz, Nt = {cfg.num_ant}, K = {cfg.num_users}, "
             f"SNR hidden in {cfg.snr_db} dB")
    print(f"\n{TASK} on {cfg.name}: {title}, {args.episodes} episodes")
    write_csv(rows, out / "demo.csv")
    plot(rows, ks, title, out / "demo.png")
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the demo; a bad path or value gives ``demo: <what> (<path>)`` and exit status 2."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: the shipped icwm-small)")
    ap.add_argument("--family", default="configs/systems/latent_unseen.yaml")
    ap.add_argument("--system", default="prel_unseen_rma_3p5_ula12_k6")
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
