"""bf / de / pe: sub-6 GHz channel -> mmWave beam, distance, path loss; one token per sub-6 subcarrier group.

Learned: the group tokens (angular power over fixed bins, power in dB, lag-1 correlation), bf's label token (from
the beam's azimuth and the pair's dominant sub-6 azimuth, so a demonstration shows where its beam points against
its sub-6 angle), the read-outs, the confidence of bf's prior, de / pe's regressors of the in-context fit; in the
latent form what the cell's panel offset (bf) or power offset (de, pe) is, through the trunk (the latent probe in
``icwm.py`` reads it out; with ``model.nominal`` as an offset from the cell's stated nominal offset, an embedding
on the group tokens).
Closed form: bf's prior, the sub-6 angle spectrum read at the mmWave beams' directions with the panel rotated by
the probe's offset estimate (``beams.rotated_beam_scores``; physics of the rotation, the offset is the network's);
with ``model.bf_density_kernel``, the log of the mean of the earlier pairs' implied-offset banks or the sum of their
logs (``demo_log_density``: a kernel density or a robust log-likelihood of the demonstrations' offsets that the
probe's learned kernel reads; a pooling, not an estimate);
de / pe, with ``cfg.icr``: the in-context ridge regression (``icr.py``) of what the read-out ``z0`` missed on
``[1, received power, learned features]`` (the cell's own path-loss law and offset).

Heads: bf = learned confidence x prior logits (argmax-preserving); de / pe = read-out ``z0`` + ICR add-on; with
``model.nominal`` pe's read-out is the path loss at zero power offset plus the probe's offset estimate (a cell
transmitting Delta dB more reaches the same received power through Delta dB more path loss; ``to_z`` units).
With ``model.nominal_frame`` the inputs are read in the frame of the stated nominal offset (bf: each beam's azimuth
rotated by it into the sub-6 frame; de / pe: the received power less it) and pe adds only the probe's offset from
the nominal: a cell told its nominal offset sees the same tokens as a cell at offset 0 with the same residual.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from icwm.model.common import NominalEmbed, c2r, mlp, nominal_values, pad_dim, scalar_latents, sinusoid
from icwm.model.config import ModelConfig
from icwm.model.icr import InContextRidge, exclusive_cumsum
from icwm.wireless import beams

Y = {"bf": "beam", "de": "distance_m", "pe": "pathloss_db"}
LIMITS = [("h_sub6", -1, "max_ant"), ("h_sub6", -2, "max_sc")]


def to_z(task: str, value: torch.Tensor) -> torch.Tensor:
    """de / pe labels in the model's regression space: ``log(d / 100 m)``, ``(PL - 100 dB) / 20``."""
    if task == "de":
        return torch.log(value.clamp_min(1e-3) / 100.0)
    return (value - 100.0) / 20.0


def from_z(task: str, z: torch.Tensor) -> torch.Tensor:
    """Inverse of ``to_z`` (de clamped to 100 m * e^[-8, 8])."""
    if task == "de":
        return 100.0 * torch.exp(z.clamp(-8.0, 8.0))
    return 100.0 + 20.0 * z


@dataclass
class Sub6Ctx:
    """Mean received power [B, P] (dB / 20), labels [B, P] (bf beams, de / pe in ``to_z`` space), the channel, and
    the nominal offset [B, P] float32 the inputs were read relative to (natural units; 0 without ``nominal_frame``),
    whether the batch states that nominal at all (``stated``: false in the given form, which applies no offset);
    bf with ``model.bf_density_kernel``: ``log_density`` [B, P, bf_probe_bins], what the latent probe reads of the
    earlier pairs' offset banks (``demo_log_density``)."""

    power: torch.Tensor
    label: torch.Tensor
    h: torch.Tensor
    nominal: torch.Tensor
    log_density: torch.Tensor | None = None
    stated: bool = True     # whether the batch states the offset's nominal (prior_<name>; the latent form)


def offset_bank(offset_deg: torch.Tensor, bins: int, span_deg: float) -> torch.Tensor:
    """offset [...] deg -> [..., bins] float32: Gaussian bumps ``exp(-(offset - c_j)^2 / 2 w^2)`` at ``bins`` centres
    ``c_j`` evenly spaced over [-span, span], width ``w`` = their spacing (a mean of banks is a kernel density)."""
    c = torch.linspace(-span_deg, span_deg, bins, device=offset_deg.device)
    w = 2.0 * span_deg / (bins - 1)
    return torch.exp(-0.5 * ((offset_deg.float()[..., None] - c) / w) ** 2)


def demo_density(bank: torch.Tensor) -> torch.Tensor:
    """Per-pair banks [B, P, bins] -> [B, P, bins]: at pair p the mean of the banks of pairs 0..p-1 (a kernel density
    of the earlier pairs' offsets; zeros at p = 0). A pair never reads its own label."""
    csum = exclusive_cumsum(bank)
    n = torch.arange(bank.shape[1], device=bank.device, dtype=bank.dtype).clamp_min(1.0)
    return csum / n[:, None]


DENSITY_FLOOR = 1e-3    # log floor of a bank (unit bumps): a bin no pair is within 3.7 widths of


def demo_log_density(bank: torch.Tensor, form: str) -> torch.Tensor:
    """Per-pair banks [B, P, bins] -> [B, P, bins], what bf's binned probe reads at pair p of pairs 0..p-1
    (``model.bf_density_form``): "mean", ``log(demo_density + DENSITY_FLOOR)``, the log of a kernel density of their
    offsets, as wide at any p; "loglik", ``sum log(bank + DENSITY_FLOOR)``, each bin's log-likelihood under a model
    where a pair's offset is Gaussian about it or, at the floor, an outlier: a sum over the pairs, so it sharpens as
    p grows. Constant over the bins at p = 0; a pair never reads its own label."""
    if form == "mean":
        return torch.log(demo_density(bank) + DENSITY_FLOOR)
    return exclusive_cumsum(torch.log(bank + DENSITY_FLOOR))


def angle_features(az: torch.Tensor, harmonics: int) -> torch.Tensor:
    """Azimuth az [...] rad -> [..., 1 + 2 * harmonics] float32: ``az`` itself and ``sin(m az), cos(m az)``,
    m = 1..harmonics (linear in az, so differences of two angles are a linear read-out; smooth around the panel)."""
    m = torch.arange(1, harmonics + 1, device=az.device, dtype=torch.float32)
    a = az.float()[..., None] * m
    return torch.cat((az.float()[..., None], torch.sin(a), torch.cos(a)), -1)


class Sub6Embed(nn.Module):
    """x = h_sub6 [sc6, ant6]; one token per subcarrier group; a single y-token.

    bf's y-token (``cfg.bf_label == "angle"``) reads the angle features of the beam's azimuth (mmWave panel frame)
    and of the pair's dominant sub-6 azimuth (``beams.sub6_azimuth``, an input feature like the angular bins): one
    demonstration then shows the pair's beam-vs-sub-6 angle relation, which is what the panel offset shifts.
    With ``cfg.bf_offset_bins`` it also reads the pair's implied offset (sub-6 azimuth less the beam's, from the
    nominal) as a bank of Gaussian bumps (``offset_bank``): the demos' mean bank is a kernel density of the offsets
    over which the network can find a mode that outlier pairs (sub-6 path not the mmWave beam's) do not pull.
    ``"index"``: a learned embedding per beam index (v10; no notion of the beam's direction).
    With ``cfg.nominal_frame`` (module doc) the beam's azimuth is rotated by the stated nominal offset and the group
    tokens' received power is read less the nominal power offset.
    """

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task, self.group, self.bins, self.d = task, cfg.sub6_group, cfg.n_ang_bins, cfg.d_model
        self.n_beams, self.harm, self.by_angle = cfg.n_beams, cfg.bf_angle_harmonics, cfg.bf_label == "angle"
        self.off_bins, self.off_span = cfg.bf_offset_bins, cfg.bf_offset_span_deg
        self.density_bins = cfg.bf_probe_bins if task == "bf" and cfg.bf_density_kernel else 0
        self.density_form = cfg.bf_density_form
        self.x_lin = mlp(cfg.n_ang_bins + 3, cfg.d_model)
        if task != "bf":
            self.y_emb = nn.Linear(1, cfg.d_model)
        elif self.by_angle:
            self.y_emb = mlp(2 * (1 + 2 * cfg.bf_angle_harmonics) + cfg.bf_offset_bins, cfg.d_model)
        else:
            self.y_emb = nn.Embedding(cfg.n_beams, cfg.d_model)
        self.frame = cfg.nominal and cfg.nominal_frame
        self.nominal = NominalEmbed(scalar_latents(task), cfg.d_model, values=not self.frame) if cfg.nominal else None

    def frame_offset(self, batch: dict, like: torch.Tensor) -> torch.Tensor:
        """The stated nominal offset the inputs are read relative to: [B, P] float32 (deg for bf, dB for de / pe;
        0 without ``nominal_frame`` or where the batch states none)."""
        (name,) = scalar_latents(self.task)
        v = nominal_values(batch, (name,)).get(name) if self.frame else None
        zero = torch.zeros(like.shape[:2], device=like.device)
        return zero if v is None else v.to(zero.device).expand_as(zero)

    def bf_label_token(self, beam: torch.Tensor, h: torch.Tensor, nominal: torch.Tensor) -> torch.Tensor:
        """beam [B, P] int64, h [B, P, S, A], nominal offset [B, P] deg -> the y-token [B, P, d]."""
        return self.bf_label(beam, h, nominal)[0]

    def bf_label(self, beam: torch.Tensor, h: torch.Tensor,
                 nominal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The y-token [B, P, d] and, with ``density_bins``, ``demo_log_density`` of the pairs' implied offsets from
        the nominal [B, P, bins] (else None), from one reading of the pairs' azimuths."""
        if not self.by_angle:
            return self.y_emb(beam), None
        az, az6 = self.azimuths(beam, h, nominal)
        token = self.y_emb(self.angle_label_features(az, az6).to(self.y_emb[0].weight.dtype))
        if not self.density_bins:
            return token, None
        bank = offset_bank(torch.rad2deg(az6 - az), self.density_bins, self.off_span)
        return token, demo_log_density(bank, self.density_form)

    def azimuths(self, beam: torch.Tensor, h: torch.Tensor, nominal: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The beam's azimuth rotated by the nominal offset and the pair's dominant sub-6 azimuth, [B, P] rad each
        (their difference is the offset the pair implies, from the nominal)."""
        return beams.beam_azimuth(beam, self.n_beams) + torch.deg2rad(nominal), beams.sub6_azimuth(h)

    def bf_label_features(self, beam: torch.Tensor, h: torch.Tensor, nominal: torch.Tensor) -> torch.Tensor:
        """The "angle" label's features [B, P, 2 (1 + 2 harmonics) + offset bins] float32 (class doc)."""
        return self.angle_label_features(*self.azimuths(beam, h, nominal))

    def angle_label_features(self, az: torch.Tensor, az6: torch.Tensor) -> torch.Tensor:
        """``bf_label_features`` from the pairs' ``azimuths`` [B, P] rad each."""
        f = torch.cat((angle_features(az, self.harm), angle_features(az6, self.harm)), -1)
        if self.off_bins:           # the offset this pair implies, read from the nominal (``beams.fit_panel_offset``)
            f = torch.cat((f, offset_bank(torch.rad2deg(az6 - az), self.off_bins, self.off_span)), -1)
        return f

    @property
    def pools_pairs(self) -> bool:
        """Whether a pair's head context reads the earlier pairs (``demo_log_density``; for the demonstration
        cache)."""
        return bool(self.density_bins)

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """h: [B, P, S, A] complex -> [B, P, n_groups, n_ang_bins + 3] float32 (angular power, dB/20, lag-1 corr)."""
        s, a = h.shape[-2:]
        n_g = -(-s // self.group)
        u = -1.0 + (2 * torch.arange(self.bins, device=h.device) + 1.0) / self.bins          # [bins] sin(angle)
        steer = torch.exp(1j * math.pi * torch.arange(a, device=h.device)[:, None] * u[None, :]) / math.sqrt(a)
        c = (h @ steer.conj().to(h.dtype)).abs().pow(2)                                       # [B, P, S, bins]
        pw = h.abs().pow(2).sum(-1)                                                           # [B, P, S]
        lag = pad_dim((h[..., 1:, :] * h[..., :-1, :].conj()).sum(-1), -1, s)                 # [B, P, S]
        grp = lambda t: pad_dim(t, 2, n_g * self.group).unflatten(2, (n_g, self.group)).sum(3)  # noqa: E731
        cnt = grp(torch.ones_like(pw)) * a
        pw_g, ang_g, lag_g = grp(pw), grp(c), grp(lag)
        db = 10.0 * torch.log10(pw_g / cnt + 1e-30) / 20.0
        ang = ang_g / ang_g.sum(-1, keepdim=True).clamp_min(1e-30)
        return torch.cat((ang, db[..., None], c2r(lag_g / pw_g.clamp_min(1e-30))), -1)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, Sub6Ctx]:
        """h_sub6: [B, P, S, A] c64 -> x [B, P, n_groups, d], y [B, P, 1, d]."""
        f = self.features(batch["h_sub6"])
        nominal = self.frame_offset(batch, f)
        if self.task != "bf":              # received power in dB / 20, less the nominal power offset
            f = torch.cat((f[..., :self.bins], f[..., self.bins:self.bins + 1] - nominal[..., None, None] / 20.0,
                           f[..., self.bins + 1:]), -1)
        dt = self.x_lin[0].weight.dtype
        x = self.x_lin(f.to(dt)) + sinusoid(f.shape[2], self.d, f.device).to(dt)
        if self.nominal is not None:
            x = x + self.nominal(batch, f)
        lab = batch[Y[self.task]]
        label = lab.long() if self.task == "bf" else to_z(self.task, lab.float())
        y, log_density = (self.bf_label(label, batch["h_sub6"], nominal) if self.task == "bf"
                          else (self.y_emb(label[..., None].to(dt)), None))
        stated = bool(nominal_values(batch, scalar_latents(self.task)))
        return x, y[:, :, None], Sub6Ctx(power=f[..., self.bins].mean(-1), label=label, h=batch["h_sub6"],
                                         nominal=nominal, log_density=log_density, stated=stated)


class Sub6Head(nn.Module):
    """Mean of the pair's x-tokens -> bf beam logits, de distance (m), pe path loss (dB) (module doc)."""

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task, self.n_beams, self.floor = task, cfg.n_beams, cfg.bf_prior_floor
        self.offset_grad = cfg.bf_offset_grad
        self.pe_offset = task == "pe" and cfg.nominal      # pe: read-out at zero offset + the probe's offset
        self.stated_only = task in cfg.offset_stated_only  # ... applied only where the batch states its nominal
        d = cfg.d_model
        self.out = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, 1))
        if task == "bf":
            nn.init.zeros_(self.out[-1].weight)   # confidence starts at 1: the untrained head is the angle map
            nn.init.zeros_(self.out[-1].bias)
            return
        self.feat = nn.Linear(d, cfg.icr_features)
        self.icr = InContextRidge(cfg, form_table=task in cfg.icr_form_table) if cfg.icr else None

    def regress(self, h: torch.Tensor, z0: torch.Tensor, ctx: Sub6Ctx) -> torch.Tensor:
        """In-context correction of z0 [B, P] from the earlier pairs' residuals ``label - z0``: [B, P]."""
        reg = torch.cat((torch.ones_like(z0)[..., None], ctx.power.float()[..., None],
                         torch.tanh(self.feat(h).float())), -1)[:, :, None, None]       # [B, P, U 1, sample 1, F]
        resid = (ctx.label.float() - z0)[:, :, None, None, None]
        return self.icr(reg, resid, unstated=not ctx.stated)[:, :, 0, 0, 0]

    def forward(self, hx: torch.Tensor, ctx: Sub6Ctx, latent: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """hx: [B, P, G, d] -> bf {"beam_logits" [B, P, n_beams], "beam" [B, P] int64}; de / pe [B, P] float32."""
        h = hx.mean(-2)
        o = self.out(h).float()
        if self.task == "bf":
            offset = latent["panel_offset_deg"] if self.offset_grad else latent["panel_offset_deg"].detach()
            if self.stated_only and not ctx.stated:       # the given form applies no panel offset
                offset = torch.zeros_like(offset)
            prior = beams.rotated_beam_scores(ctx.h, self.n_beams, offset).clamp_min(self.floor)
            logits = torch.exp(o.clamp(-5.0, 5.0)) * prior                   # confidence > 0 keeps the argmax
            return {"beam_logits": logits, "beam": logits.argmax(-1)}
        z = o[..., 0]
        # a cell Delta dB louder: the same received power came through Delta dB more loss (none in the given form
        # with ``offset_stated_only``)
        if self.pe_offset and (ctx.stated or not self.stated_only):
            z = z + (latent["power_offset_db"].detach() - ctx.nominal) / 20.0   # (nominal 0 outside nominal_frame)
        if self.icr is not None and hx.shape[1] > 1:
            z = z + self.regress(h, z, ctx)
        return {Y[self.task]: from_z(self.task, z)}
