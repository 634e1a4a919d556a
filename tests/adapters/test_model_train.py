"""Assembly: every task's prediction has its contract shape; checkpoints hold the trainable weights only and rebuild
the same model; every YAML under configs/adapters loads. (Fine-tuning on real task data: test_finetune_real.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapter_batches import SHAPES, random_batch, tiny_cfg
from adapters_llm.config import FinetuneConfig
from adapters_llm.model import build_model, from_checkpoint, save_adapter
from adapters_llm.train import lr_factor
from icwm.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "adapters"
Y = {"pre_sr": "lam_p", "pre_mm": "lam_p", "det": "x", "ce": "h", "cp": "h_fut", "pf": "h_dl", "bf": "beam_logits",
     "de": "distance_m", "pe": "pathloss_db"}


@pytest.mark.parametrize("family", ["zheng_dai", "llm4wm"])
def test_every_task_prediction_has_the_contract_shape(family: str, rng: torch.Generator):
    tasks = list(SHAPES)
    model, _ = build_model(tiny_cfg(f"model.tasks=[{','.join(tasks)}]", f"model.family={family}"), SHAPES)
    for t in tasks:
        pred = model(random_batch(t, 3, rng), t)
        want = (3,) + (SHAPES["bf"]["beam_gain"] if t == "bf" else SHAPES[t][Y[t]])
        assert tuple(pred[Y[t]].shape) == want, t


def test_checkpoint_holds_trainable_weights_only_and_rebuilds(rng: torch.Generator, tmp_path: Path):
    cfg = tiny_cfg("adapter.peft=moe_lora", "model.tasks=[pre_sr,det]")
    shapes = {t: SHAPES[t] for t in ("pre_sr", "det")}
    model, _ = build_model(cfg, shapes)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=rng))
    out = save_adapter(model, cfg, shapes, tmp_path / "final")
    assert sorted(f.name for f in out.iterdir()) == ["adapter.safetensors", "config.yaml", "shapes.json"]
    from safetensors.torch import load_file
    stored = load_file(str(out / "adapter.safetensors"))
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(v.numel() for v in stored.values()) == n_train < sum(p.numel() for p in model.parameters())
    again = from_checkpoint(out).eval()
    x = random_batch("det", 2, rng)
    torch.testing.assert_close(again(x, "det")["x"], model.eval()(x, "det")["x"])


def test_schedule_and_bad_values():
    assert lr_factor(0, 4, 20, 0.1) == 0.25 and lr_factor(4, 4, 20, 0.1) == 1.0
    assert abs(lr_factor(20, 4, 20, 0.1) - 0.1) < 1e-12
    with pytest.raises(ValueError, match="adapter.peft"):
        tiny_cfg("adapter.peft=qlora")
    with pytest.raises(ValueError, match="train.stage1_steps"):
        tiny_cfg("train.steps=5", "train.stage1_steps=6")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_adapter_yaml_loads(path: Path):
    cfg = load_config(FinetuneConfig, path)
    assert cfg.adapter.peft in path.stem or path.stem in ("debug", "gpt2_lora", "smollm2_lora")
    with pytest.raises(ValueError, match="no_such_key"):
        load_config(FinetuneConfig, path, ["no_such_key=1"])


def test_detection_slot_tokens_carry_the_channel(rng: torch.Generator):
    """Each received-slot token is a function of the slot, its matched filter H^H y and H: with y fixed, another
    channel changes every slot token (a slot token of y alone could not be detected by a per-slot decoder)."""
    from adapters_llm.encoders import DetectionEncoder
    enc = DetectionEncoder(4, 2, 16, 8)
    x = random_batch("det", 3, rng)
    other = {**x, "h": random_batch("det", 3, rng)["h"]}
    tok, tok_other = enc(x)[0], enc(other)[0]
    assert tok.shape == (3, 1 + 8, 8)
    assert ((tok[:, 1:] - tok_other[:, 1:]).abs().amax(-1) > 1e-6).all()
    # the slot MLP's input holds the matched filter (H^H y)_u = sum_r conj(h_ru) y_r after y's 2 rx features
    seen = []
    enc.y_mlp.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    enc(x)
    mf = torch.einsum("bru,bsr->bsu", x["h"].conj(), x["y"])
    torch.testing.assert_close(seen[0][..., 2 * 4:2 * 4 + 2 * 2], torch.view_as_real(mf).flatten(-2))


@pytest.mark.parametrize("family", ["zheng_dai", "llm4wm"])
def test_residual_heads_start_at_the_first_guess_and_learn_a_correction(family: str, rng: torch.Generator):
    """model.residual: untrained, the ce / cp / pf predictions are the tasks' first guesses (LS + linear
    interpolation, repeat-last, UL reuse); a few optimiser steps on one batch move them and lower its loss."""
    from icwm import tasks as task_registry
    from icwm.tasks.common import first_guess
    tasks = ["ce", "cp", "pf"]
    cfg = tiny_cfg(f"model.tasks=[{','.join(tasks)}]", f"model.family={family}", "model.residual=[ce,cp,pf]")
    model, _ = build_model(cfg, {t: SHAPES[t] for t in tasks})
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for t in tasks:
        task, x = task_registry.get(t), random_batch(t, 4, rng)
        first = first_guess(task, {k: x[k] for k in task.X_KEYS}, SHAPES[t])[Y[t]]
        torch.testing.assert_close(model(x, t)[Y[t]], first)
        before = float(task.loss(model(x, t), x).mean())
        for _ in range(5):
            opt.zero_grad()
            task.loss(model(x, t), x).mean().backward()
            opt.step()
        assert float(task.loss(model(x, t), x).mean()) < before, t


def test_residual_needs_a_first_guess_and_a_listed_task():
    with pytest.raises(ValueError, match="model.residual"):
        tiny_cfg("model.tasks=[det,cp]", "model.residual=[det]")
    with pytest.raises(ValueError, match="model.residual"):
        tiny_cfg("model.tasks=[cp]", "model.residual=[ce]")
