"""Diagnostic (docs/results/v12_latent/precoding_probe.md): how far the latent probe's SNR
estimate, not the read-out, limits latent precoding.

For each query of the evaluation's latent episodes (seed 1, 64 per system, k + 1 of 17 pairs) and k in 0 / 1 / 4 / 16:
net:          the model as evaluated (lam_p rendered at the probe's SNR estimate);
solver@hat:   the oracle's own solver (WMMSE-100 for pre_sr, the max-min optimum for pre_mm) designed at the probe's
              estimate: what a perfect read-out would reach with the network's inferred SNR;
in_context:   the classical in-context baseline (the solver at the SNR fitted to the demonstrations' labels).
Prints the probe's absolute SNR error (median / mean, dB) and eta against blind / oracle (+- paired SE).
Usage: python docs/results/v12_latent/precoding_probe.py MODEL TASKS FAMILIES, e.g. ``shipped pre_sr,pre_mm unseen``.
"""
import sys, torch
from icwm import tasks as R
from icwm.data.config import load_family
from icwm.eval import runner
from icwm.eval.eta import eta, per_query_metric
from icwm.tasks import pre_mm, pre_sr
from icwm.tasks.common import snr_to_power
model, _ = runner.load_model(sys.argv[1] if len(sys.argv) > 1 else "shipped", torch.device("cpu"))
SOLVERS = {"pre_sr": pre_sr.wmmse_latent, "pre_mm": pre_mm.optimum}
KS = [0, 1, 4, 16]
for t in (sys.argv[2].split(",") if len(sys.argv) > 2 else ["pre_sr", "pre_mm"]):
    task, solve = R.get(t), SOLVERS[t]
    name, scale = per_query_metric(t)
    for famname in (sys.argv[3].split(",") if len(sys.argv) > 3 else ("unseen",)):
        vals, errs = {}, {k: [] for k in KS}
        for system in load_family(f"configs/systems/latent_{famname}.yaml"):
            for sample in runner.episodes(task, system, 64, 17, 32, (1, "eval", f"latent_{famname}", system.name, t)):
                q = runner.query(sample)
                for k in KS:
                    base = task.baselines(runner.take(sample, k))     # blind / oracle ignore the k demos
                    for m in ("blind", "oracle", "in_context"):
                        vals.setdefault((m, k), []).append(task.metric(runner.query(base[m]), q)[name].float())
                    p1 = runner.model_query_pred(model, task, sample, k, torch.device("cpu"))
                    s_hat = p1["latent_hat_snr_db"]                                 # [E]
                    errs[k].append((s_hat - sample["latent_snr_db"][:, -1]).abs())
                    vals.setdefault(("net", k), []).append(task.metric(p1, q)[name].float())
                    w_hat = solve(q["h"], snr_to_power(s_hat))
                    vals.setdefault(("solver@hat", k), []).append(task.metric({"W": w_hat}, q)[name].float())
        print(f"== {t} latent_{famname}")
        print("  |SNR error| dB, median / mean:",
              "  ".join(f"k={k} {torch.cat(errs[k]).median():.2f} / {torch.cat(errs[k]).mean():.2f}" for k in KS))
        for meth in ("net", "solver@hat", "in_context"):
            cat = lambda m, k: torch.cat(vals[(m, k)])  # noqa: E731
            es = [eta(cat(meth, k), cat("blind", k), cat("oracle", k), scale) for k in KS]
            print(f"  {meth:12s}", "  ".join(f"{e.eta:+.2f}+-{e.eta_se:.2f}" for e in es))
        sys.stdout.flush()
