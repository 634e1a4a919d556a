"""Shared tiny builders for the adapters_llm tests: random tensors of the docs/contracts.md task shapes."""
from __future__ import annotations

import torch

from adapters_llm.config import FinetuneConfig
from icwm.config import load_config

# per-sample shapes (tiny sizes): inputs and labels of docs/contracts.md, plus the bf metadata beam_gain
SHAPES = {
    "pre_sr": {"h": (2, 4), "snr_db": (), "lam_p": (2, 2)},
    "pre_mm": {"h": (2, 4), "snr_db": (), "lam_p": (2, 2)},
    "det": {"h": (4, 2), "y": (8, 4), "snr_db": (), "x": (8, 2)},
    "ce": {"h_ls": (2, 2, 4), "snr_db": (), "h": (2, 8, 4)},
    "cp": {"h_hist": (16, 8, 4), "snr_db": (), "h_fut": (4, 8, 4)},
    "pf": {"h_ul": (2, 8, 4), "snr_db": (), "h_dl": (2, 8, 4)},
    "bf": {"h_sub6": (8, 4), "beam": (), "beam_gain": (32,)},
    "de": {"h_sub6": (8, 4), "distance_m": ()},
    "pe": {"h_sub6": (8, 4), "pathloss_db": ()},
}
COMPLEX = {"h", "y", "x", "h_ls", "h_hist", "h_fut", "h_ul", "h_dl", "h_sub6"}


def random_batch(task: str, batch: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Random tensors of the contract shapes: complex CN(0,1) channels, SNR in [0, 20] dB, plausible labels."""
    out = {}
    for key, shape in SHAPES[task].items():
        full = (batch,) + shape
        if key in COMPLEX:
            out[key] = torch.complex(torch.randn(full, generator=rng), torch.randn(full, generator=rng)) / 2 ** 0.5
        elif key == "beam":
            out[key] = torch.randint(0, 32, full, generator=rng)
        else:
            out[key] = 20.0 * torch.rand(full, generator=rng)
    return out


def tiny_cfg(*overrides: str) -> FinetuneConfig:
    """A tiny random-backbone config (2 blocks, width 32) with extra ``key=value`` overrides."""
    base = ["backbone.n_layers=2", "backbone.hidden=32", "backbone.heads=4", "backbone.vocab=128",
            "model.width=16", "model.enc_blocks=1", "adapter.rank=4", "adapter.n_experts=3", "adapter.task_dim=8",
            "train.progress=false"]
    return load_config(FinetuneConfig, None, base + list(overrides))
