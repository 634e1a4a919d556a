"""Task decoders: LLM output hidden states -> predictions in the task's Y_KEYS form (docs/contracts.md).

Each decoder takes ``(hidden [seq_batch, seq, d_llm], ctx)`` (``ctx`` from the matching encoder, prompt positions
already removed) and returns a dict of prediction tensors with leading ``[batch]``. Channel outputs are
de-normalised with the encoder's per-sample scale; regression outputs use fixed affine de-normalisation
(``REGRESSION``), never batch statistics.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from adapters_llm.encoders import Ctx, TaskAdapter, expand_to, mlp

# de-normalisation of scalar regression targets: value = shift + scale * head output
REGRESSION = {"de": ("distance_m", 150.0, 100.0), "pe": ("pathloss_db", 110.0, 20.0)}


def to_complex(z: torch.Tensor) -> torch.Tensor:
    """[..., 2] float (real, imag) -> [...] complex64."""
    return torch.view_as_complex(z.float().contiguous())


class PrecodingDecoder(nn.Module):
    """pre_sr / pre_mm (Zheng & Dai): two FC layers per user token -> (lambda, p), power-scaled by a softmax over
    users so each column sums to 1 (the normalised structure of docs/contracts.md). -> ``lam_p [batch, user, 2]``."""

    def __init__(self, d_llm: int, width: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(d_llm, width), nn.ReLU(), nn.Linear(width, 2))

    def forward(self, hidden: torch.Tensor, ctx: Ctx) -> dict[str, torch.Tensor]:
        return {"lam_p": torch.softmax(self.fc(hidden).float(), dim=1)}


class DetectionDecoder(nn.Module):
    """det: MLP on each received-slot token -> the K transmitted symbols. -> ``x [batch, slot, user] c64``."""

    def __init__(self, d_llm: int, width: int, n_user: int) -> None:
        super().__init__()
        self.n_user = n_user
        self.mlp = mlp(d_llm, width, 2 * n_user)

    def forward(self, hidden: torch.Tensor, ctx: Ctx) -> dict[str, torch.Tensor]:
        out = self.mlp(hidden[:, 1:])                                             # [b, slot, 2 user]
        return {"x": to_complex(out.reshape(out.shape[:2] + (self.n_user, 2)))}


class PredictionDecoder(nn.Module):
    """cp (Zheng & Dai): MLP over the flattened patch tokens of one antenna -> future snapshots, de-normalised.
    -> ``h_fut [batch, t_out, sc, ant] c64``."""

    def __init__(self, n_patch: int, d_llm: int, width: int, t_out: int, n_sc: int) -> None:
        super().__init__()
        self.t_out, self.n_sc = t_out, n_sc
        self.mlp = mlp(n_patch * d_llm, width, t_out * n_sc * 2)

    def forward(self, hidden: torch.Tensor, ctx: Ctx) -> dict[str, torch.Tensor]:
        b = int(ctx["batch"])
        out = self.mlp(hidden.flatten(1)).reshape(b, -1, self.t_out, self.n_sc, 2)  # [b, ant, t_out, sc, 2]
        h = to_complex(out).permute(0, 2, 3, 1)                                   # [b, t_out, sc, ant]
        return {"h_fut": h * expand_to(ctx["scale"], h)}


class CNNHead(nn.Module):
    """Conv1d (k = 3) head over tokens, then an optional linear map of the token axis: [b, L_in, w] -> [b, L_out, G]."""

    def __init__(self, width: int, n_out: int, l_in: int, l_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(width, width, 3, padding=1), nn.GELU(), nn.Conv1d(width, n_out, 3, padding=1))
        self.seq = nn.Linear(l_in, l_out) if l_in != l_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(self.conv(x.transpose(1, 2))).transpose(1, 2)


class WMDecoder(nn.Module):
    """LLM4WM output side: multi-task adapter, then a CNN head (ce / cp / pf) or an MLP head (bf / de / pe).

    Args:
        task: task id. shapes: per-sample shapes of the task's keys. d_llm, width, n_blocks: sizes.
        n_tokens: sequence length produced by the encoder.
    """

    def __init__(self, task: str, shapes: dict[str, tuple[int, ...]], d_llm: int, width: int, n_blocks: int,
                 n_tokens: int) -> None:
        super().__init__()
        self.task, self.adapter = task, TaskAdapter(d_llm, width, width, n_blocks)
        if task == "ce":
            t, self.n_sc, ant = shapes["h"]
            self.ratio = math.ceil(self.n_sc / n_tokens)
            self.head = CNNHead(width, self.ratio * t * ant * 2, n_tokens, n_tokens)
        elif task == "cp":
            self.head = CNNHead(width, 2 * shapes["h_fut"][1] * shapes["h_fut"][2], n_tokens, shapes["h_fut"][0])
        elif task == "pf":
            t, _, ant = shapes["h_dl"]
            self.head = CNNHead(width, t * ant * 2, n_tokens, n_tokens)
        else:
            n_out = shapes["beam_gain"][-1] if task == "bf" else 1
            self.head = mlp(width, width, n_out)
        self.shapes = shapes

    def forward(self, hidden: torch.Tensor, ctx: Ctx) -> dict[str, torch.Tensor]:
        z = self.adapter(hidden)                                                  # [b, seq, width]
        if self.task in ("bf", "de", "pe"):
            out = self.head(z.mean(1)).float()                                   # [b, n_out]
            if self.task == "bf":
                return {"beam_logits": out, "beam": out.argmax(-1)}
            key, shift, scale = REGRESSION[self.task]
            return {key: shift + scale * out[:, 0]}
        out = self.head(z)                                                        # [b, L_out, G]
        b = out.shape[0]
        if self.task == "ce":
            t, sc, ant = self.shapes["h"]
            h = to_complex(out.reshape(b, -1, t, ant, 2))[:, :sc].permute(0, 2, 1, 3)   # [b, t, sc, ant]
            key = "h"
        elif self.task == "cp":
            h, key = to_complex(out.reshape((b,) + tuple(self.shapes["h_fut"]) + (2,))), "h_fut"
        else:
            t, sc, ant = self.shapes["h_dl"]
            h, key = to_complex(out.reshape(b, sc, t, ant, 2)).permute(0, 2, 1, 3), "h_dl"
        return {key: h * expand_to(ctx["scale"], h)}


def build_decoder(task: str, family: str, shapes: dict[str, tuple[int, ...]], d_llm: int, width: int,
                  adapter_blocks: int, n_tokens: int) -> nn.Module:
    """The decoder of ``task`` (mirrors ``encoders.build_encoder``); ``n_tokens``: its encoder's sequence length."""
    if task in ("pre_sr", "pre_mm"):
        return PrecodingDecoder(d_llm, width)
    if task == "det":
        return DetectionDecoder(d_llm, width, shapes["h"][1])
    if task == "cp" and family == "zheng_dai":
        t_out, sc, _ = shapes["h_fut"]
        return PredictionDecoder(n_tokens, d_llm, width, t_out, sc)
    return WMDecoder(task, shapes, d_llm, width, adapter_blocks, n_tokens)
