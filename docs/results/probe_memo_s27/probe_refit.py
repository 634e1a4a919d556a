"""Is the probe's compression (slope of its SNR estimate on the truth ~0.5) a matter of how its read-out is trained?

The trunk and the fit are frozen at a trained model's weights; the probe's inputs (pooled trunk x-tokens, the
branch's raw fit and nominal features) are captured at every pair of k = 16 episodes of the training shards (three
random orders per group, latent and given-form systems). Copies of the model's two read-outs (main probe + branch,
trained weights, the branch's standardisation frozen) are then trained further on the even-numbered groups under
different schedules (``train``), and evaluated on the odd-numbered latent groups at the query (k = 16): mean
absolute error and slope per system.

    OMP_NUM_THREADS=1 python docs/results/probe_memo_s27/probe_refit.py --model <run>/model --task pre_sr
"""
import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "probe_memo_s25"))
from probe_memo import shard_groups  # noqa: E402

from icwm import tasks  # noqa: E402
from icwm.eval.runner import load_model, model_inputs  # noqa: E402
from icwm.model import LATENT_SCALES  # noqa: E402
from icwm.train.objective import latent_target  # noqa: E402

ROOT = Path("data/shards/small_nominal")
ORDERS = 3


def capture(model, task: str, g: dict[str, torch.Tensor], rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Probe inputs at every pair of k = 16 episodes of groups ``g`` in ``ORDERS`` random orders: main [N, 17, d],
    branch [N, 17, n], base (the nominal the read-out offsets) [N, 17], target [N, 17], group index [N]."""
    seen, hooks = {}, []
    for name in ("probes", "fit_probes"):
        mod = getattr(model, name)[task]
        hooks.append(mod.register_forward_hook(lambda m, a, o, name=name: seen.update({name: (a[0], o)})))
    out, (n, s) = [], latent_target({**g, "task": task}, "snr_db").shape
    try:
        for _ in range(ORDERS):
            order = torch.argsort(torch.rand(n, s, generator=rng), 1)
            sample = {key: torch.gather(v, 1, order.view(n, s, *[1] * (v.dim() - 2)).expand_as(v))
                      for key, v in g.items()}
            b = {"task": task, "k": s - 1, **model_inputs(tasks.get(task), sample)}
            with torch.no_grad():
                hat = model(b)["latent_hat_snr_db"]
            (main_in, main_o), (fit_in, fit_o) = seen["probes"], seen["fit_probes"]
            base = hat - LATENT_SCALES["snr_db"] * (main_o + fit_o)[..., 0]
            target = latent_target({**sample, "task": task}, "snr_db")
            out.append(dict(main=main_in, branch=fit_in, base=base, target=target, group=torch.arange(n)))
    finally:
        for h in hooks:
            h.remove()
    return {key: torch.cat([o[key] for o in out]) for key in out[0]}


class ReadOut(torch.nn.Module):
    """The model's main probe + branch (copies), the branch's standardisation frozen."""

    def __init__(self, model, task: str) -> None:
        super().__init__()
        self.main, self.branch = copy.deepcopy(model.probes[task]), copy.deepcopy(model.fit_probes[task])

    def forward(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        self.branch[0].eval()
        return d["base"] + LATENT_SCALES["snr_db"] * (self.main(d["main"]) + self.branch(d["branch"]))[..., 0]


def train(net: ReadOut, data: dict[str, dict], systems: list[str], batching: str, optim: str, steps: int,
          rng: torch.Generator) -> None:
    """Train ``net`` on ``data``'s systems. batching: "system" = each batch one system's groups at all 17 pairs (as
    the sampler's), "accumN" = an N-th of each of N random systems' rows (as N accumulated one-system micro batches),
    "mixed" = 256 pairs drawn over all systems; optim: "recipe" = AdamW lr 1e-3 weight decay 0.1,
    "adam" = Adam lr 3e-3 (the offline read-out's)."""
    params = list(net.main.parameters()) + list(net.branch[1].parameters())
    if optim == "recipe":
        opt = torch.optim.AdamW(params, 1e-3, weight_decay=0.1)
    else:
        opt = torch.optim.Adam(params, 3e-3)
    flat = {s: {key: v.reshape(-1, *v.shape[2:]) for key, v in data[s].items() if key != "group"} for s in systems}
    pool = {key: torch.cat([flat[s][key] for s in systems]) for key in flat[systems[0]]}
    for _ in range(steps):
        if batching == "system":
            s = systems[int(torch.randint(len(systems), (1,), generator=rng))]
            b = flat[s]
        elif batching.startswith("accum"):
            n = int(batching.removeprefix("accum"))
            parts = [share(flat[systems[i]], n, rng) for i in torch.randperm(len(systems), generator=rng)[:n]]
            b = {key: torch.cat([p[key] for p in parts]) for key in pool}
        else:
            idx = torch.randint(len(pool["target"]), (256,), generator=rng)
            b = {key: v[idx] for key, v in pool.items()}
        loss = ((net(b) - b["target"]) / LATENT_SCALES["snr_db"]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def share(d: dict[str, torch.Tensor], parts: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """A random 1 / ``parts`` share of one system's rows (contiguous: whole groups' pairs)."""
    n = len(d["target"]) // parts
    start = int(torch.randint(parts, (1,), generator=rng)) * n
    return {key: v[start: start + n] for key, v in d.items()}


def split(d: dict[str, torch.Tensor], parity: int) -> dict[str, torch.Tensor]:
    keep = d["group"] % 2 == parity
    return {key: v[keep] for key, v in d.items()}


def evaluate(net: ReadOut, test: dict[str, dict]) -> dict[str, tuple[float, float]]:
    """system -> (mean absolute error dB, slope) at the query (pair 16)."""
    out = {}
    with torch.no_grad():
        for s, d in test.items():
            q = {key: v[:, -1] for key, v in d.items() if key != "group"}
            hat, y = net(q), q["target"]
            out[s] = ((hat - y).abs().mean().item(), (torch.cov(torch.stack((hat, y)))[0, 1] / y.var()).item())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--task", default="pre_sr")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _ = load_model(args.model, torch.device("cpu"))
    rng = torch.Generator().manual_seed(0)
    latent = {s: capture(model, args.task, g, rng) for s, g in shard_groups(ROOT, args.task).items()}
    given = {s: capture(model, args.task, g, rng) for s, g in shard_groups(ROOT, args.task, "seen_").items()}
    test = {s: split(d, 1) for s, d in latent.items()}
    data = {**{s: split(d, 0) for s, d in latent.items()}, **given}
    runs = {"trained": None}
    for batching in ("system", "accum4", "accum8", "mixed"):
        for optim in ("recipe", "adam"):
            for steps in (750, 3000):
                for form, systems in (("latent + given", list(data)), ("latent", list(latent))):
                    runs[f"{batching}, {optim}, {steps}, {form}"] = (batching, optim, steps, systems)
    res = {}
    for name, spec in runs.items():
        net = ReadOut(model, args.task)
        if spec:
            train(net, data, spec[3], *spec[:3], torch.Generator().manual_seed(1))
        res[name] = evaluate(net, test)
    print("| batching, optimiser, steps, training forms | " + " | ".join(s.removeprefix("prel_") for s in test)
          + " | mean |")
    print("|---|" + "---|" * (len(test) + 1))
    for name, r in res.items():
        cells = [f"{e:.2f} / {sl:.2f}" for e, sl in r.values()]
        e, sl = (sum(v[i] for v in r.values()) / len(r) for i in (0, 1))
        print(f"| {name} | " + " | ".join(cells) + f" | {e:.2f} / {sl:.2f} |")


if __name__ == "__main__":
    main()
