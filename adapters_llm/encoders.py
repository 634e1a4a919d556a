"""Task encoders: task inputs (X_KEYS tensors, leading ``[batch]``) -> LLM input tokens ``[seq_batch, seq, d_llm]``.

Each encoder returns ``(tokens, ctx)``; ``ctx`` carries what its decoder needs (per-sample scale for
de-normalisation, batch size when antennas are folded into the sequence batch). Normalisation is per sample
(never over the batch). Complex channels become real features only in :func:`real_features`.

Zheng & Dai: ``PrecodingEncoder`` (pre_sr / pre_mm: 3-block transformer over per-user tokens), ``DetectionEncoder``
(MLPs over H and over each received slot with its matched filter and H), ``PredictionEncoder`` (cp: normalisation,
temporal patches, SE-style CSI attention, linear to the LLM width). LLM4WM: ``WMEncoder`` = per-task preprocessing
(flatten for ce/cp/pf, DFT angle domain for bf/de/pe) + multi-task adapter (linear alignment, residual conv1d
k = 3 blocks with GELU).
"""
from __future__ import annotations

import math

import torch
from torch import nn

Ctx = dict[str, torch.Tensor | int]


def real_features(z: torch.Tensor) -> torch.Tensor:
    """Complex -> real: z [...] complex -> [..., 2] float (real, imag) stacked last."""
    return torch.view_as_real(z.resolve_conj()).float()


def rms(z: torch.Tensor, n_dims: int) -> torch.Tensor:
    """Per-sample RMS over the last ``n_dims`` dims: z [batch, ...] -> [batch] float32, floored."""
    return z.abs().float().square().flatten(-n_dims).mean(-1).sqrt().clamp_min(1e-12)


def expand_to(s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample [batch] tensor against ``like`` [batch, ...]."""
    return s.reshape(s.shape + (1,) * (like.dim() - s.dim()))


def mlp(d_in: int, width: int, d_out: int) -> nn.Sequential:
    """Two-layer MLP with GELU."""
    return nn.Sequential(nn.Linear(d_in, width), nn.GELU(), nn.Linear(width, d_out))


class ResConvBlock(nn.Module):
    """LLM4WM adapter block over the token axis: ``x + conv1d_k3(GELU(conv1d_k3(x)))``, x: [batch, seq, ch]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, seq, ch] -> same."""
        y = self.conv2(self.act(self.conv1(x.transpose(1, 2))))
        return x + y.transpose(1, 2)


class TaskAdapter(nn.Module):
    """LLM4WM multi-task adapter: linear alignment -> residual conv blocks -> linear, [b, seq, d_in] -> [b, seq, d_out]."""

    def __init__(self, d_in: int, width: int, d_out: int, n_blocks: int) -> None:
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.Sequential(*[ResConvBlock(width) for _ in range(n_blocks)])
        self.out = nn.Linear(width, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, seq, d_in] -> [batch, seq, d_out]."""
        return self.out(nn.functional.gelu(self.blocks(self.inp(x))))


class PrecodingEncoder(nn.Module):
    """pre_sr / pre_mm: one token per user from its normalised channel, gain and SNR; 3 transformer blocks.

    Inputs: ``h [batch, user, ant] c64``, ``snr_db [batch]``. Tokens: [batch, user, d_llm].
    """

    def __init__(self, n_ant: int, width: int, d_llm: int, n_blocks: int) -> None:
        super().__init__()
        self.inp = nn.Linear(2 * n_ant + 2, width)
        layer = nn.TransformerEncoderLayer(width, nhead=4 if width % 4 == 0 else 1, dim_feedforward=2 * width,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, n_blocks, enable_nested_tensor=False)
        self.out = nn.Linear(width, d_llm)

    def forward(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Ctx]:
        h, snr = x["h"], x["snr_db"].float()
        gain = h.abs().square().sum(-1).float()                                   # [batch, user]
        hn = h / expand_to(gain.sqrt().clamp_min(1e-12), h)                       # unit-norm rows
        feats = torch.cat([real_features(hn).flatten(-2), torch.log10(gain.clamp_min(1e-12))[..., None],
                           (snr / 10.0)[:, None, None].expand(-1, h.shape[1], 1)], -1)  # [batch, user, 2 ant + 2]
        return self.out(self.blocks(self.inp(feats))), {"batch": h.shape[0]}


class DetectionEncoder(nn.Module):
    """det: one token for the channel (MLP of vec H and SNR) + one token per received slot: an MLP of y_l, its matched
    filter H^H y_l, vec H and the SNR, so each slot token carries what detecting that slot needs (DetNet's inputs).

    Inputs: ``h [batch, rx, user] c64``, ``y [batch, slot, rx] c64``, ``snr_db [batch]``. Tokens [batch, 1 + slot, d].
    """

    def __init__(self, n_rx: int, n_user: int, width: int, d_llm: int) -> None:
        super().__init__()
        self.h_mlp = mlp(2 * n_rx * n_user + 1, width, d_llm)
        self.y_mlp = mlp(2 * n_rx + 2 * n_user + 2 * n_rx * n_user + 1, width, d_llm)

    def forward(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Ctx]:
        h, y, snr = x["h"], x["y"], x["snr_db"].float()
        ch = torch.cat([real_features(h).flatten(1), snr[:, None] / 10.0], -1)                 # [b, 2 rx user + 1]
        mf = y @ h.conj()                                                                     # [b, slot, user]
        per_slot = torch.cat([real_features(y).flatten(-2), real_features(mf).flatten(-2),
                              ch[:, None].expand(-1, y.shape[1], -1)], -1)                   # [b, slot, feat]
        return torch.cat([self.h_mlp(ch)[:, None], self.y_mlp(per_slot)], 1), {"batch": h.shape[0]}


class PredictionEncoder(nn.Module):
    """cp (Zheng & Dai): per-sample normalisation, antennas folded into the batch, temporal patches,
    SE-style CSI attention over features, linear to the LLM width.

    Inputs: ``h_hist [batch, t_in, sc, ant] c64``. Tokens [batch * ant, n_patch, d_llm].
    """

    def __init__(self, t_in: int, n_sc: int, patch: int, width: int, d_llm: int) -> None:
        super().__init__()
        self.patch, self.n_patch = patch, math.ceil(t_in / patch)
        self.embed = nn.Linear(patch * 2 * n_sc, width)
        self.se = nn.Sequential(nn.Linear(width, max(width // 4, 1)), nn.ReLU(), nn.Linear(max(width // 4, 1), width),
                                nn.Sigmoid())
        self.out = nn.Linear(width, d_llm)

    def forward(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Ctx]:
        h = x["h_hist"]
        b, t, sc, ant = h.shape
        scale = rms(h, 3)                                                         # [batch]
        z = real_features(h / expand_to(scale, h)).permute(0, 3, 1, 2, 4)         # [b, ant, t, sc, 2]
        z = z.reshape(b * ant, t, 2 * sc)
        z = nn.functional.pad(z, (0, 0, self.n_patch * self.patch - t, 0))        # left-pad time to whole patches
        z = self.embed(z.reshape(b * ant, self.n_patch, self.patch * 2 * sc))     # [b*ant, n_patch, width]
        z = z * self.se(z.mean(1))[:, None]                                       # CSI attention (squeeze-excite)
        return self.out(z), {"batch": b, "scale": scale}


# LLM4WM preprocessing: complex input key and token layout per task
WM_INPUT = {"ce": "h_ls", "cp": "h_hist", "pf": "h_ul", "bf": "h_sub6", "de": "h_sub6", "pe": "h_sub6"}


def wm_tokens(task: str, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Ctx]:
    """LLM4WM preprocessing: features [batch, seq, feat] and the per-sample scale.

    ce: tokens over pilot subcarriers (time x ant flattened); cp: over past snapshots (sc x ant flattened);
    pf: over subcarriers (time x ant flattened); bf/de/pe: over sub-6 subcarriers, features the angle-domain
    (antenna DFT) channel plus the log received power (which carries distance / path loss).
    """
    h = x[WM_INPUT[task]]
    scale = rms(h, h.dim() - 1)
    hn = h / expand_to(scale, h)
    if task in ("ce", "pf"):
        feats = real_features(hn.permute(0, 2, 1, 3)).flatten(2)                  # [b, sc, time * ant * 2]
    elif task == "cp":
        feats = real_features(hn).flatten(2)                                      # [b, t_in, sc * ant * 2]
    else:
        ang = torch.fft.fft(hn, dim=-1, norm="ortho")                             # [b, sc6, angle]
        logp = (20.0 * torch.log10(scale) / 100.0)[:, None, None].expand(-1, h.shape[1], 1)
        feats = torch.cat([real_features(ang).flatten(2), logp], -1)              # [b, sc6, 2 ant6 + 1]
    return feats, {"batch": h.shape[0], "scale": scale}


def wm_feature_dim(task: str, shapes: dict[str, tuple[int, ...]]) -> int:
    """Feature width of :func:`wm_tokens` from per-sample shapes."""
    s = shapes[WM_INPUT[task]]
    if task in ("ce", "pf"):
        return 2 * s[0] * s[2]
    if task == "cp":
        return 2 * s[1] * s[2]
    return 2 * s[1] + 1


class WMEncoder(nn.Module):
    """LLM4WM input side: task preprocessing + multi-task adapter to the LLM width. Tokens [batch, seq, d_llm]."""

    def __init__(self, task: str, shapes: dict[str, tuple[int, ...]], width: int, d_llm: int, n_blocks: int) -> None:
        super().__init__()
        self.task = task
        self.adapter = TaskAdapter(wm_feature_dim(task, shapes), width, d_llm, n_blocks)

    def forward(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Ctx]:
        feats, ctx = wm_tokens(self.task, x)
        return self.adapter(feats), ctx


def build_encoder(task: str, family: str, shapes: dict[str, tuple[int, ...]], width: int, d_llm: int,
                  enc_blocks: int, adapter_blocks: int, patch: int) -> nn.Module:
    """The encoder of ``task`` (the one place tasks map to encoders). ``shapes``: per-sample shapes of its keys."""
    if task in ("pre_sr", "pre_mm"):
        return PrecodingEncoder(shapes["h"][-1], width, d_llm, enc_blocks)
    if task == "det":
        return DetectionEncoder(shapes["h"][0], shapes["h"][1], width, d_llm)
    if task == "cp" and family == "zheng_dai":
        t_in, sc, _ = shapes["h_hist"]
        return PredictionEncoder(t_in, sc, patch, width, d_llm)
    return WMEncoder(task, shapes, width, d_llm, adapter_blocks)


def n_tokens(task: str, family: str, shapes: dict[str, tuple[int, ...]], patch: int) -> int:
    """Sequence length the encoder of ``task`` produces (after the prompt is removed)."""
    if task in ("pre_sr", "pre_mm"):
        return shapes["h"][0]
    if task == "det":
        return 1 + shapes["y"][0]
    if task == "cp" and family == "zheng_dai":
        return math.ceil(shapes["h_hist"][0] / patch)
    s = shapes[WM_INPUT[task]]
    return s[0] if task == "cp" else s[1] if task in ("ce", "pf") else s[0]
