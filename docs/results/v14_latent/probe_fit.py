"""Diagnostic (docs/results/v14_latent/probe_fit.md): does the latent probe's SNR estimate generalise beyond the
training groups? Mean |SNR error| (dB) at k = 16 on (a) the training shards' latent groups of the seen systems and
(b) fresh groups of the same systems (another seed). Equal errors: the probe underfits; (a) << (b): it memorises.
Usage: python docs/results/v14_latent/probe_fit.py MODEL [SHARDS_DIR], e.g. ``shipped data/shards/small_mixed``."""
import sys, glob, torch
from icwm import tasks as R
from icwm.data.config import load_family
from icwm.data.shards import load_shard
from icwm.eval import runner
model, _ = runner.load_model(sys.argv[1], torch.device("cpu"))
shards = sys.argv[2] if len(sys.argv) > 2 else "data/shards/small_mixed"
K = 16
for t in ("pre_sr", "pre_mm"):
    task = R.get(t)
    err = lambda s: (runner.model_query_pred(model, task, s, K, torch.device("cpu"))["latent_hat_snr_db"]
                     - s["latent_snr_db"][:, K]).abs()
    for system in load_family("configs/systems/latent_seen.yaml"):
        tr = []
        for f in sorted(glob.glob(f"{shards}/train-{t}-{system.name}-*.tar")):
            g, _ = load_shard(f)
            tr.append(err({k: v[:, :K + 1] for k, v in g.items()}))
        fr = [err({k: v[:, :K + 1] for k, v in s.items()})
              for s in runner.episodes(task, system, 64, 17, 32, (7, "diag", system.name, t))]
        tr, fr = torch.cat(tr), torch.cat(fr)
        print(f"{t} {system.name:32s} train groups {len(tr):4d}: {tr.mean():5.2f} dB | fresh {len(fr)}: "
              f"{fr.mean():5.2f} dB", flush=True)
