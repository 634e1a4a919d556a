"""Where does the non-finite matrix in the pre_sr refinement come from on CUDA? Run launch/evaluate.py with checks."""
import runpy
import sys

import torch

import icwm.wireless.precoding as P

orig_wfs, orig_iter = P.wmmse_from_structure, P._iterate_gram


def report(name, t):
    if torch.is_tensor(t) and not torch.isfinite(t).all():
        flat = (~torch.isfinite(t)).reshape(t.shape[0], -1).any(-1) if t.dim() else ~torch.isfinite(t)
        idx = flat.nonzero().flatten()[:5].tolist()
        print(f"NONFINITE {name} shape {tuple(t.shape)} rows {idx}", flush=True)
        return idx
    return []


def wfs(h, lam_p, p, iters):
    for name, t in (("h", h), ("lam_p", lam_p), ("p", p)):
        report(name, t)
    if torch.is_tensor(p):
        print(f"p range {p.min().item():.4g} {p.max().item():.4g}; lam_p range {lam_p.min().item():.4g} "
              f"{lam_p.max().item():.4g}; lam_p row sums min {lam_p.sum(-2).min().item():.4g}", flush=True)
    return orig_wfs(h, lam_p, p, iters)


def it(G, p, B, iters):
    for name, t in (("G", G), ("B0", B), ("p_iter", p)):
        report(name, t)
    return orig_iter(G, p, B, iters)


orig_mse = P._mse_weights
seen = []


def mse(E):
    out = orig_mse(E)
    if len(seen) < 3 and (report("E", E) or report("omega", out[0]) or report("d", out[1])):
        seen.append(1)
        r = (~torch.isfinite(out[1])).reshape(E.shape[0], -1).any(-1).nonzero().flatten()[0]
        print("E row", E[r], "omega", out[0][r], "d", out[1][r], flush=True)
    return out


P.wmmse_from_structure, P._iterate_gram, P._mse_weights = wfs, it, mse
sys.argv = ["evaluate.py"] + sys.argv[1:]
runpy.run_path("launch/evaluate.py", run_name="__main__")
