"""Which channel regressors let a per-episode fit of pre_mm's labels tell the SNR (a diagnostic of candidate
features for the precoding fit, ``icwm.model.precoding``; nothing in the model is set from it).

pre_mm's eta(16) on the latent unseen family (0.85, icwm-small v25) is limited by its SNR estimate (2.1 dB at k = 16),
and session 16's fit_readability.py showed that the fit's map over ``[1, log gain, log orthogonality]`` tells the SNR
to 1.0-2.9 dB at best. Max-min optima are MMSE-like: a user's power depends on its channel through ``(R + a I)^-1``
with the loading ``a`` set by the SNR, so regressors at several loadings, or quadratic terms, may carry more. For each
regressor set: exact least-squares maps of each episode's first k pairs (log labels on the regressors, centred over
the users as the model's), one quadratic read-out of the SNR from the maps fitted on the **seen** family, and the
mean absolute SNR error per system of both families (the unseen ones out of sample).

    OMP_NUM_THREADS=2 python docs/results/pre_mm_fit_s34/fit_terms.py > docs/results/pre_mm_fit_s34/fit_terms.md
"""
import torch

from icwm import tasks
from icwm.data.config import load_family
from icwm.model.precoding import LOADING, centred_regressors, fit_targets

GROUPS, PER_GROUP, TASK = 48, 17, "pre_mm"


def features(G: torch.Tensor, loadings: tuple[float, ...], quad: bool) -> torch.Tensor:
    """G [..., user, user] Gram -> [..., user, F] float64: 1, then log gain, log orthogonality at each loading of the
    normalised Gram R (``1 / [(R + a I)^-1]_kk``) and with ``quad`` their squares and product, centred over users
    (``centred_regressors``, as the model's)."""
    dg = G.diagonal(dim1=-2, dim2=-1).real.clamp_min(1e-12)
    R = G / (dg[..., :, None] * dg[..., None, :]).sqrt()
    eye = torch.eye(G.shape[-1], dtype=G.dtype)
    f = [dg.log()] + [(1.0 / torch.linalg.inv(R + a * eye).diagonal(dim1=-2, dim2=-1).real).log() for a in loadings]
    if quad:
        f += [f[0] ** 2, f[1] ** 2, f[0] * f[1]]
    return centred_regressors(torch.stack(f, -1))


SETS = {  # name: (loadings, quadratic terms)
    "[1, lg, lo] (the model's)": ((LOADING,), False),
    "+ lo at loadings 0.1, 1": ((LOADING, 0.1, 1.0), False),
    "+ lg^2, lo^2, lg lo": ((LOADING,), True),
}


def episodes(fam: str) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(system, Gram [group, pair, K, K], log labels [group, pair, K, 2], true SNR [group]) per system."""
    out = []
    for system in load_family(f"configs/systems/{fam}.yaml"):
        d = tasks.get(TASK).generate(system, GROUPS, PER_GROUP, torch.Generator().manual_seed(0))
        h = d["h"].to(torch.complex128)
        out.append((system.name, h @ h.mH, fit_targets(d["lam_p"]).double(), d["latent_snr_db"][:, 0].double()))
    return out


def maps(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Least-squares maps of the first k pairs of each group: x [group, pair, K, F], y [group, pair, K, 2] ->
    [group, 2 F]."""
    x, y = x[:, :k].flatten(1, 2), y[:, :k].flatten(1, 2)
    eye = torch.eye(x.shape[-1], dtype=x.dtype)
    return torch.linalg.solve(x.mT @ x + 1e-6 * eye, x.mT @ y).flatten(1)


def design(m: torch.Tensor) -> torch.Tensor:
    """Quadratic features of the maps [group, M] -> [group, 2 M + 1]."""
    return torch.cat((m, m ** 2, torch.ones(len(m), 1, dtype=m.dtype)), 1)


def main() -> None:
    fams = {fam: episodes(f"latent_{fam}") for fam in ("seen", "unseen")}
    print(f"{TASK}, {GROUPS} groups of {PER_GROUP} pairs per system (seed 0); SNR error (dB, mean absolute) of a "
          "quadratic read-out fitted on the seen family's maps\n")
    print("| regressors | k | family | system | SNR error (dB) | prior spread (dB) |\n|---|---|---|---|---|---|")
    for name, (loadings, quad) in SETS.items():
        xs = {fam: [features(G, loadings, quad) for _, G, _, _ in rows] for fam, rows in fams.items()}
        for k in (1, 4, 16):
            a = torch.cat([maps(x, y, k) for x, (_, _, y, _) in zip(xs["seen"], fams["seen"])])
            s = torch.cat([snr for *_, snr in fams["seen"]])
            beta = torch.linalg.lstsq(design(a), s[:, None]).solution
            for fam, rows in fams.items():
                for x, (system, _, y, snr) in zip(xs[fam], rows):
                    err = ((design(maps(x, y, k)) @ beta)[:, 0] - snr).abs().mean().item()
                    spread = (snr - snr.mean()).abs().mean().item()
                    print(f"| {name} | {k} | {fam} | {system} | {err:.2f} | {spread:.2f} |")


if __name__ == "__main__":
    main()
