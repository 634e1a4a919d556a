"""Diagnostic (docs/results/v12r_latent/README.md): latent pre_sr with n WMMSE steps at the probe's SNR estimate,
started from the network's own (lambda, p) read-out (what ``model.precoding_refine`` does with n = LABEL_ITERS).

The evaluation's latent episodes (seed 1, 64 per system); eta against blind / oracle (+- paired SE) at k = 0 / 1 / 4 /
16 for each n, beside the classical in-context baseline. Usage: python refine_probe.py MODEL FAMILY [N,N,...].
"""
import sys, torch
from icwm import tasks as R
from icwm.data.config import load_family
from icwm.eval import runner
from icwm.eval.eta import eta, per_query_metric
from icwm.model import build_model
from icwm.tasks.common import snr_to_power
from icwm.wireless import precoding as P
loaded, _ = runner.load_model(sys.argv[1], torch.device("cpu"))
model = build_model(loaded.cfg.replace(precoding_refine=False)).eval()   # the read-out alone; steps applied below
model.load_state_dict(loaded.state_dict())
KS = [0, 1, 4, 16]; ITERS = [int(n) for n in (sys.argv[3] if len(sys.argv) > 3 else "0,2,5,10,20,50,100").split(",")]
t = "pre_sr"; task = R.get(t); name, scale = per_query_metric(t)
fam = sys.argv[2] if len(sys.argv) > 2 else "unseen"
vals = {}
for system in load_family(f"configs/systems/latent_{fam}.yaml"):
    for sample in runner.episodes(task, system, 64, 17, 32, (1, "eval", f"latent_{fam}", system.name, t)):
        q = runner.query(sample)
        for k in KS:
            base = task.baselines(runner.take(sample, k))
            for m in ("blind", "oracle", "in_context"):
                vals.setdefault((m, k), []).append(task.metric(runner.query(base[m]), q)[name].float())
            p1 = runner.model_query_pred(model, task, sample, k, torch.device("cpu"))
            pd = snr_to_power(p1["latent_hat_snr_db"])
            for n in ITERS:
                W = P.wmmse_from_structure(q["h"], p1["lam_p"], pd, n)
                vals.setdefault((f"net+{n}", k), []).append(task.metric({"W": W}, q)[name].float())
print(f"== {t} latent_{fam}")
for meth in [f"net+{n}" for n in ITERS] + ["in_context"]:
    cat = lambda m, k: torch.cat(vals[(m, k)])  # noqa: E731
    es = [eta(cat(meth, k), cat("blind", k), cat("oracle", k), scale) for k in KS]
    print(f"  {meth:12s}", "  ".join(f"{e.eta:+.2f}+-{e.eta_se:.2f}" for e in es))
