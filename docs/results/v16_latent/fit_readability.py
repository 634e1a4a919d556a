"""How well a per-episode least-squares fit of the pre_* labels on the precoding fit's regressors tells the SNR.

For each latent precoding system (configs/systems/latent_{seen,unseen}.yaml) and k demonstrations: fit each episode's
log labels on ``icwm.model.precoding.fit_regressors`` (the model's regressors, exact least squares), read the SNR off
the 6 fitted coefficients by one quadratic map fitted on the seen family's episodes, and report the mean absolute
SNR error per system beside the prior's spread (mean |SNR - family mean|). A diagnostic of the features the model is
given, not of the model: the model learns its own read-out of its own (ridge) fit.

    OMP_NUM_THREADS=1 python docs/results/v16_latent/fit_readability.py > docs/results/v16_latent/fit_readability.md
"""
import torch

from icwm import tasks
from icwm.data.config import load_family
from icwm.model.precoding import fit_regressors, fit_targets

GROUPS, PER_GROUP = 48, 17


def episodes(task: str, fam: str) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(system, regressors [group, pair, K, 3], log labels [group, pair, K, 2], true SNR [group]) per system."""
    out = []
    for system in load_family(f"configs/systems/{fam}.yaml"):
        d = tasks.get(task).generate(system, GROUPS, PER_GROUP, torch.Generator().manual_seed(0))
        h = d["h"].to(torch.complex128)
        x = fit_regressors(h @ h.mH).double()
        y = fit_targets(d["lam_p"]).double()
        out.append((system.name, x, y, d["latent_snr_db"][:, 0].double()))
    return out


def maps(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Least-squares maps of the first k pairs of each group: [group, 6]."""
    x, y = x[:, :k].flatten(1, 2), y[:, :k].flatten(1, 2)                       # [group, k K, 3], [group, k K, 2]
    return torch.linalg.solve(x.mT @ x + 1e-6 * torch.eye(3, dtype=x.dtype), x.mT @ y).flatten(1)


def design(m: torch.Tensor) -> torch.Tensor:
    """Quadratic features of the fitted maps [group, 6] -> [group, 13]."""
    return torch.cat((m, m ** 2, torch.ones(len(m), 1, dtype=m.dtype)), 1)


def main() -> None:
    print("| task | k | family | system | SNR error (dB) | prior spread (dB) |\n|---|---|---|---|---|---|")
    for task in ("pre_mm", "pre_sr"):
        fams = {fam: episodes(task, f"latent_{fam}") for fam in ("seen", "unseen")}
        for k in (1, 4, 16):
            a = torch.cat([maps(x, y, k) for _, x, y, _ in fams["seen"]])
            s = torch.cat([snr for *_, snr in fams["seen"]])
            beta = torch.linalg.lstsq(design(a), s[:, None]).solution
            for fam, rows in fams.items():
                for name, x, y, snr in rows:
                    err = ((design(maps(x, y, k)) @ beta)[:, 0] - snr).abs().mean().item()
                    spread = (snr - snr.mean()).abs().mean().item()
                    print(f"| {task} | {k} | {fam} | {name} | {err:.2f} | {spread:.2f} |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
