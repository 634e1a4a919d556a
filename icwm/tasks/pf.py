"""pf: FDD uplink -> downlink frequency prediction.

x: ``h_ul [time, sc, ant] complex64`` (UL band, noisy at ``snr_db``), ``snr_db []``; y: ``h_dl [time, sc, ant]``
(DL band of the same link: M subcarriers starting ``DUPLEX_GAP_BANDS`` band-widths above the UL band's end).
A group is one link; its samples are snapshots ``SNAPSHOT_GAP_S`` apart.

Latent form: the SNR is one per group and absent from x (``latent_snr_db``); with ``cfg.latent.oracle_snapshots``
> 0, ``oracle_h_dl`` is the DL band of every pair from the per-(delay, beam) band map fitted on the link's further
snapshots (noisy UL at the true SNR, clean DL): the band-map LMMSE with the link's joint UL/DL statistics.
"""
from __future__ import annotations

import torch

from icwm.tasks.common import ORACLE_PREFIX, add_noise, channel_nmse, check_counts, is_latent, nmse_report
from icwm.tasks.link_common import SNAPSHOT_GAP_S, draw_snr, link_series_oracle, link_spec, snr_fields
from icwm.wireless import duplex
from icwm.wireless.sysconfig import SystemConfig

SPEC = link_spec("pf", x="h_ul", y="h_dl", context=True, trivial="nearest")
ID, X_KEYS, Y_KEYS, LATENT_X = SPEC.id, SPEC.x_keys, SPEC.y_keys, SPEC.latent_x
DUPLEX_GAP_BANDS = 1   # gap between UL and DL, in units of the M-subcarrier band


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Returns ``h_ul [group, sample, 1, sc, ant]``, ``snr_db [group, sample]``, ``h_dl [group, sample, 1, sc, ant]``;
    latent form: ``latent_snr_db`` / ``prior_snr_db`` instead of ``snr_db`` and, with oracle snapshots,
    ``oracle_h_dl [group, sample, 1, sc, ant]``."""
    check_counts(n_groups, n_per_group)
    m = cfg.num_subcarriers
    h, extra, _ = link_series_oracle(cfg, n_groups, n_per_group, rng, interval_s=SNAPSHOT_GAP_S,
                                     n_sc=(2 + DUPLEX_GAP_BANDS) * m)
    h = h[:, :, None]                                                    # [group, sample, 1, sc_total, ant]
    snr_db = draw_snr(cfg, n_groups, n_per_group, rng)
    out = {"h_ul": add_noise(h[..., :m, :], snr_db, rng), **snr_fields(cfg, snr_db),
           "h_dl": h[..., -m:, :].contiguous()}
    if extra is not None:
        ul_x = add_noise(extra[..., :m, :], snr_db[:, :1], rng)                     # [group, n_extra, sc, ant]
        gram, cross = duplex.band_map_stats(ul_x, extra[..., -m:, :])             # [group, delay, beam, F(, F)]
        out[ORACLE_PREFIX + "h_dl"] = duplex.band_map_apply(gram[:, None, None], cross[:, None, None], out["h_ul"])
    return out


def loss(pred: dict, sample: dict) -> torch.Tensor:
    """NMSE (linear) [N]."""
    return channel_nmse(pred, sample, "h_dl")


def metric(pred: dict, sample: dict) -> dict[str, torch.Tensor]:
    """``nmse`` [N] and ``nmse_db`` [N]."""
    return nmse_report(loss(pred, sample))


def baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """``nearest``: DL = UL (same link, channel reused across the duplex gap); ``linear``: per time/antenna, a
    least-squares line through the UL band's response extrapolated to the DL subcarriers (noisy, for reference);
    with demonstrations (``sample`` tensors [..., pair, time, sc, ant], the query last, more than one pair)
    ``band_ls``: the per-(delay, beam) least-squares band map fitted to the demos' (UL, DL) snapshots of the link
    (``icwm.wireless.duplex.band_map_ls``). The query's label never enters it. None of them reads an SNR.

    Latent samples add ``oracle`` (the stored ``oracle_h_dl``, when present), ``blind`` = ``nearest`` (UL reuse) and
    ``in_context`` = ``band_ls`` (blind with no demos)."""
    ul = sample["h_ul"]
    m = ul.shape[-2]
    f_ul = torch.arange(m, dtype=torch.float32)
    f_dl = f_ul + (1 + DUPLEX_GAP_BANDS) * m
    A = torch.stack([torch.ones(m), f_ul], -1).to(ul.dtype)           # [sc, 2]
    coef = torch.linalg.pinv(A) @ ul                                    # [..., 2, ant]
    lin = torch.stack([torch.ones(m), f_dl], -1).to(ul.dtype) @ coef  # [..., sc, ant]
    out = {"nearest": {"h_dl": ul.clone()}, "linear": {"h_dl": lin}}
    if ul.shape[-4] >= 2:
        q = ul[..., -1, :, :, :]                                                      # [..., T, sc, ant]
        ul_d, dl_d = (t[..., :-1, :, :, :].flatten(-4, -3)[..., None, :, :, :].expand(q.shape[:-2] + (-1,) * 3)
                      for t in (ul, sample["h_dl"]))                                 # [..., T, k T, sc, ant]
        band = duplex.band_map_ls(ul_d, dl_d, q)                                     # [..., T, sc, ant]
        out["band_ls"] = {"h_dl": torch.cat((ul[..., :-1, :, :, :], band[..., None, :, :, :]), -4)}
    if is_latent(sample):
        out["blind"] = out["nearest"]
        out["in_context"] = out.get("band_ls", out["nearest"])
        if ORACLE_PREFIX + "h_dl" in sample:
            out["oracle"] = {"h_dl": sample[ORACLE_PREFIX + "h_dl"]}
    return out
