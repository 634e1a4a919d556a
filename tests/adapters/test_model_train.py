"""Assembly and training: every task's prediction has its contract shape; a tiny fine-tune per method lowers a
synthetic loss (a learnable map of the inputs, since the lead's task modules are optional here); checkpoints hold
the trainable weights only and rebuild the same model; every YAML under configs/adapters loads."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapter_batches import SHAPES, random_batch, tiny_cfg
from adapters_llm.config import FinetuneConfig
from adapters_llm.model import build_model, from_checkpoint, save_adapter
from adapters_llm.train import Trainer, lr_factor
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


def _pool(n: int, rng: torch.Generator) -> dict:
    """cp samples whose future is the last 4 past snapshots (learnable), and pe labels linear in the log power."""
    cp = random_batch("cp", n, rng)
    cp["h_fut"] = cp["h_hist"][:, -4:].clone()
    pe = random_batch("pe", n, rng)
    pe["h_sub6"] = pe["h_sub6"] * torch.pow(10.0, -torch.rand(n, generator=rng) * 2)[:, None, None]
    pe["pathloss_db"] = -10.0 * torch.log10(pe["h_sub6"].abs().square().mean((-1, -2)))
    return {"cp": cp, "pe": pe}


def nmse(pred: dict, s: dict) -> torch.Tensor:
    return (pred["h_fut"] - s["h_fut"]).abs().square().sum((1, 2, 3)) / s["h_fut"].abs().square().sum((1, 2, 3))


def mse_db(pred: dict, s: dict) -> torch.Tensor:
    return ((pred["pathloss_db"] - s["pathloss_db"]) / 10.0).square()


@pytest.mark.parametrize("peft,schedule", [("lora", "zheng_dai"), ("moe_lora", "llm4wm"), ("nf4_loftq", "zheng_dai"),
                                           ("nf4_naive", "zheng_dai"), ("frozen", "llm4wm"), ("no_llm", "llm4wm")])
def test_tiny_finetune_lowers_the_loss(peft: str, schedule: str, rng: torch.Generator, tmp_path: Path):
    cfg = tiny_cfg(f"adapter.peft={peft}", f"train.schedule={schedule}", "model.tasks=[cp,pe]",
                   "model.family=llm4wm", f"model.prompt={peft != 'no_llm'}", "train.steps=40", "train.stage1_steps=20",
                   "train.lr=1e-2", "train.batch_size=8", "train.dwa_window=5", "train.few_shot=32")
    model, report = build_model(cfg, {t: SHAPES[t] for t in ("cp", "pe")})
    assert bool(report) == peft.startswith("nf4")
    saved = []
    trainer = Trainer(model, cfg.train, _pool(48, rng), {"cp": nmse, "pe": mse_db},
                      on_save=lambda step, final: saved.append((step, final)))
    hist = trainer.fit()
    assert saved == [(40, True)] and all(torch.isfinite(torch.tensor(hist.loss)))
    for t in ("cp", "pe"):
        vals = [v for _, v in hist.task_loss[t]]
        assert sum(vals[-4:]) / 4 < 0.95 * sum(vals[:4]) / 4, (t, vals)   # noise of these means is ~1%


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
