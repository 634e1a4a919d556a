"""Which part of the probe carries pre_mm's SNR estimate with ``probe_fit=branch``: the main probe (pooled trunk
tokens) or the branch (the fit's raw map)? On the training shards' latent groups at k = 16: the spread of each part,
its correlation with the target (the offset from the stated nominal, or the SNR where none is stated) and the error
of their sum.

    OMP_NUM_THREADS=1 python docs/results/probe_memo_s25/branch_parts.py --model <run>/model
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from probe_memo import shard_groups  # noqa: E402

from icwm import tasks  # noqa: E402
from icwm.eval.runner import load_model, model_inputs, take  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    model, _ = load_model(ap.parse_args().model, torch.device("cpu"))
    cap, probe = {}, model.probe

    def spy(task, hx, batch, x0=None, fit=None):
        cap.update(hx=hx, fit=fit, batch=batch)
        return probe(task, hx, batch, x0, fit)

    model.probe = spy
    task, parts = "pre_mm", {"branch": [], "main": [], "target": []}
    for s in shard_groups(Path("data/shards/small_nominal"), task).values():
        b = {"task": task, "k": 16, **take(model_inputs(tasks.get(task), s), 16)}
        with torch.no_grad():
            model(b)
            hat = probe(task, cap["hx"], cap["batch"], None, cap["fit"])["snr_db"][:, -1]
            main = 20 * model.probes[task](cap["hx"].mean(2))[:, -1, 0]
        nominal = s.get("prior_snr_db", torch.zeros_like(s["latent_snr_db"]))[:, 0]
        parts["main"].append(main)
        parts["branch"].append(hat - nominal - main)
        parts["target"].append(s["latent_snr_db"][:, 0] - nominal)
    br, main, off = (torch.cat(parts[n]) for n in ("branch", "main", "target"))
    corr = lambda a: torch.corrcoef(torch.stack((a, off)))[0, 1].item()  # noqa: E731
    print(f"target sd {off.std():.2f} dB; branch sd {br.std():.2f}, corr {corr(br):.2f}; main sd {main.std():.2f}, "
          f"corr {corr(main):.2f}; error of the sum {(br + main - off).abs().mean():.2f} dB, of the main probe alone "
          f"{(main - off).abs().mean():.2f} dB")


if __name__ == "__main__":
    main()
