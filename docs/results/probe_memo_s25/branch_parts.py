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
from icwm.model import LATENT_SCALES  # noqa: E402


def probe_parts(model, task: str, groups: dict[str, torch.Tensor], k: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """The SNR probe at the query of k-demonstration episodes of ``groups`` [group, sample, ...] (no grad): (its
    estimate [group] dB, the main probe's part [group] dB (pooled trunk tokens), the fit's raw map [group, pair, n]
    the branch reads, the model's input batch)."""
    cap, probe = {}, model.probe

    def spy(t, hx, batch, x0=None, fit=None):
        out = probe(t, hx, batch, x0, fit)
        cap.update(hx=hx, fit=fit, hat=out["snr_db"])
        return out

    b = {"task": task, "k": k, **take(model_inputs(tasks.get(task), groups), k)}
    model.probe = spy
    try:
        with torch.no_grad():
            model(b)
            main = LATENT_SCALES["snr_db"] * model.probes[task](cap["hx"].mean(2))[:, -1, 0]
    finally:
        del model.probe                                                 # back to the class's method
    return cap["hat"][:, -1], main, cap["fit"], b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    model, _ = load_model(ap.parse_args().model, torch.device("cpu"))
    task, parts = "pre_mm", {"branch": [], "main": [], "target": []}
    for s in shard_groups(Path("data/shards/small_nominal"), task).values():
        hat, main, _, _ = probe_parts(model, task, s, 16)
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
