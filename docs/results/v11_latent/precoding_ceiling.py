"""Diagnostic (docs/results/v11_latent/precoding_ceiling.md): latent-form episodes answered three ways by one model.

one:  the latent form as evaluated (SNR hidden; lam_p rendered at the probe's estimate);
two:  the given-form path fed the probe's own estimate as the SNR input of every pair (a second pass);
true: the given-form path fed the true SNR (what the read-out achieves when the latent is known exactly).
eta against blind / oracle WMMSE on the same queries (the evaluation's episodes: seed 1, 64 per system, k + 1 of 17
pairs). Usage: python docs/results/v11_latent/precoding_ceiling.py MODEL TASKS FAMILIES, e.g.
``shipped pre_sr unseen,seen`` (TASKS among pre_sr, pre_mm, ce, cp, pf; FAMILIES among seen, unseen).
"""
import sys, torch
from icwm import tasks as R
from icwm.data.config import load_family
from icwm.eval import runner
from icwm.eval.eta import eta, per_query_metric
torch.set_num_threads(1)
model, _ = runner.load_model(sys.argv[1] if len(sys.argv) > 1 else "shipped", torch.device("cpu"))
tasks = sys.argv[2].split(",") if len(sys.argv) > 2 else ["pre_sr", "pre_mm", "cp", "ce", "pf"]
fams = {"pre_sr": "latent", "pre_mm": "latent", "ce": "link_latent", "cp": "link_latent", "pf": "link_latent"}
KS = [0, 1, 4, 16]
for t in tasks:
    task = R.get(t)
    name, scale = per_query_metric(t)
    for famname in (sys.argv[3].split(",") if len(sys.argv) > 3 else ("unseen",)):
        fam = f"{fams[t]}_{famname}"
        systems = load_family(f"configs/systems/{fam}.yaml")
        vals = {}
        for system in systems:
            for sample in runner.episodes(task, system, 64, 17, 32, (1, "eval", f"latent_{famname}", system.name, t)):
                q = runner.query(sample)
                base = task.baselines(runner.take(sample, 1))      # blind / oracle read no demos
                bq = {m: task.metric(runner.query(base[m]), q)[name].float() for m in ("blind", "oracle")}
                for k in KS:
                    p1 = runner.model_query_pred(model, task, sample, k, torch.device("cpu"))
                    s_hat = p1["latent_hat_snr_db"]                       # [E]
                    preds = {"one": p1}
                    truth = sample["latent_snr_db"][:, -1]
                    for meth, s_in in (("two", s_hat), ("true", truth)):
                        sub = runner.take(runner.model_inputs(task, sample), k)
                        sub["snr_db"] = s_in[:, None].expand(-1, k + 1).clone()
                        for key in task.Y_KEYS:
                            sub[key] = sub[key].clone(); sub[key][:, -1] = 0
                        with torch.inference_mode():
                            out = model({"task": t, "k": k, **sub})
                        preds[meth] = {key: v[:, -1] for key, v in out.items()}
                        if t.startswith("pre"):
                            preds[meth]["snr_db"] = s_in
                    for meth, p in preds.items():
                        vals.setdefault((meth, k), []).append(task.metric(p, q)[name].float())
                    for meth in ("blind", "oracle"):
                        vals.setdefault((meth, k), []).append(bq[meth])
        print(f"== {t} {fam}")
        for meth in ("one", "two", "true"):
            row = []
            for k in KS:
                cat = lambda m: torch.cat(vals[(m, k)])  # noqa: E731
                e = eta(cat(meth), cat("blind"), cat("oracle"), scale)
                row.append(f"{e.eta:+.2f}+-{e.eta_se:.2f}")
            print(f"  {meth:10s}", "  ".join(row))
        sys.stdout.flush()
