"""Where ``probe_fit=branch``'s SNR estimate goes wrong, per training system of a precoding task: at k = 0 / 4 / 16 on
the training shards' latent groups, the estimate's mean absolute error, bias and slope on the truth, the main probe's
part (pooled trunk tokens) and the branch's (the fit's raw map and the stated nominal; its correlation with the
true offset from the nominal), and the branch's standardised inputs at k = 16 (mean z-score per input over the groups).

    OMP_NUM_THREADS=2 python docs/results/probe_memo_s26/branch_bias.py --model <run>/model --task pre_sr
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "probe_memo_s25"))
from branch_parts import probe_parts  # noqa: E402
from probe_memo import shard_groups  # noqa: E402

from icwm.eval.runner import load_model  # noqa: E402
from icwm.model.common import nominal_features  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--task", default="pre_sr")
    args = ap.parse_args()
    model, _ = load_model(args.model, torch.device("cpu"))
    task, norm = args.task, model.fit_probes[args.task][0]
    print("| system | k | error (dB) | bias | slope | main: mean, sd | branch: mean, sd, corr "
          "| branch inputs' z at k=16 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, s in shard_groups(Path("data/shards/small_nominal"), task).items():
        for k in (0, 4, 16):
            hat, main, fit, b = probe_parts(model, task, s, k)
            feat = torch.cat((fit.float(), nominal_features(b, model.nominal.get(task, ()), fit)), -1)
            z = ((feat - norm.mean) / (norm.var + norm.eps).sqrt())[:, -1].mean(0)
            nominal, truth = s["prior_snr_db"][:, 0], s["latent_snr_db"][:, 0]
            br = hat - nominal - main
            corr = torch.corrcoef(torch.stack((br, truth - nominal)))[0, 1].item() if k else float("nan")
            slope = torch.cov(torch.stack((hat, truth)))[0, 1] / truth.var()
            zs = " ".join(f"{v:.1f}" for v in z.tolist()) if k == 16 else ""
            print(f"| {name} | {k} | {(hat - truth).abs().mean():.2f} | {(hat - truth).mean():+.2f} | {slope:.2f} | "
                  f"{main.mean():+.2f}, {main.std():.2f} | {br.mean():+.2f}, {br.std():.2f}, {corr:.2f} | {zs} |")


if __name__ == "__main__":
    main()
