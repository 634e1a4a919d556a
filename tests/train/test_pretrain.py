"""Pretraining: schedule and DeepSpeed config from the typed config, the engine against a plain torch loop, and
end-to-end runs of launch/pretrain.py (one process, and two CPU ranks under the DeepSpeed launcher)."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from icwm.config import load_config
from icwm.model import build_model, count_parameters
from icwm.train import checkpoint as ckpt
from icwm.train.config import PretrainConfig
from icwm.train.engine import (SHM_DIR, build_engine, build_optimizer, ds_config, init_distributed, lr_lambda,
                               on_gpu, optimizer_step)

ROOT = Path(__file__).resolve().parents[2]
DEBUG = ROOT / "configs" / "pretrain" / "debug.yaml"
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT")
TASK_KEYS = ("pre_sr", "pre_mm", "det", "ce", "cp", "pf", "bf", "de", "pe")


def clean_env() -> dict:
    """This process's environment without torch.distributed variables (a child starts its own group)."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env["OMP_NUM_THREADS"] = "1"
    return env


def scalars(out: Path) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard scalars of a run: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def cfg_with(*overrides: str) -> PretrainConfig:
    return load_config(PretrainConfig, DEBUG, list(overrides))


def test_lr_schedule_warmup_then_cosine():
    cfg = cfg_with("optim.warmup_steps=4", "optim.min_lr_ratio=0.1", "train.steps=14")
    f = lr_lambda(cfg.optim, cfg.train.steps)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0) and f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))   # half-way down the cosine
    assert all(f(s) >= f(s + 1) for s in range(4, 20))


@pytest.mark.parametrize("stage", [0, 2])
def test_deepspeed_config_from_typed_config(stage):
    cfg = cfg_with("data.batch_size=3", "train.grad_accum=5", "optim.clip=0.7", f"deepspeed.zero_stage={stage}")
    ds = ds_config(cfg, "fp32")
    assert ds["train_micro_batch_size_per_gpu"] == 3 and ds["gradient_accumulation_steps"] == 5
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["gradient_clipping"] == (0.0 if stage == 0 else 0.7)     # stage 0 clips with torch before step()
    assert "torch_autocast" not in ds
    assert ds_config(cfg, "bf16")["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}


class Toy(torch.nn.Module):
    """Stand-in model (the engine is model-agnostic): a 2-layer MLP on a batch dict."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net(batch["x"])


@pytest.mark.parametrize("stage", [0, 1])
def test_engine_steps_equal_a_plain_torch_loop(stage):
    """Accumulation scaling, clipping, AdamW groups and the LambdaLR match a hand-written torch loop."""
    init_distributed()
    cfg = cfg_with("train.grad_accum=2", "optim.clip=0.05", "optim.weight_decay=0.1", "optim.warmup_steps=2",
                   "train.steps=3", f"deepspeed.zero_stage={stage}")
    g = torch.Generator().manual_seed(0)
    batches = [{"x": torch.randn(4, 6, generator=g), "y": torch.randn(4, 2, generator=g)} for _ in range(6)]
    torch.manual_seed(0)
    a, b = Toy(), Toy()
    b.load_state_dict(a.state_dict())
    engine, precision = build_engine(a, cfg)
    assert precision == "fp32"
    norms = []
    for batch in batches:
        engine.backward((engine(batch) - batch["y"]).pow(2).mean())
        norms.append(optimizer_step(engine, cfg.optim.clip, stage == 0))
    opt, sched = build_optimizer(b, cfg)
    ref_norms = []
    for i in range(0, 6, 2):
        for batch in batches[i:i + 2]:
            ((b(batch) - batch["y"]).pow(2).mean() / 2).backward()
        ref_norms.append(float(torch.nn.utils.clip_grad_norm_(b.parameters(), cfg.optim.clip)))
        opt.step()
        opt.zero_grad()
        sched.step()
    assert norms[0::2] == [None] * 3
    assert norms[1::2] == pytest.approx(ref_norms, rel=1e-5)
    assert min(ref_norms) > cfg.optim.clip                               # clipping was active
    assert engine.get_lr() == pytest.approx(sched.get_last_lr())
    for (name, p), q in zip(engine.module.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(engine.module.net[0].weight, Toy().net[0].weight)


def run_pretrain(out: Path, *overrides: str, ranks: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python launch/pretrain.py`` (1 rank) or ``deepspeed --num_gpus N launch/pretrain.py`` on CPU."""
    argv = launch_argv(ranks, str(ROOT / "launch" / "pretrain.py"), "--config", str(DEBUG), f"train.out_dir={out}",
                       "train.progress=false", *overrides)
    before = shm_buffers()
    r = subprocess.run(argv, env=clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert shm_buffers() <= before      # DeepSpeed's per-rank shm all-reduce buffers are released, not left in RAM
    return r


def launch_argv(ranks: int, script: str, *args: str) -> list[str]:
    """``python SCRIPT ARGS`` (1 rank) or ``deepspeed --num_gpus N --master_port FREE SCRIPT ARGS`` (CPU ranks)."""
    if ranks == 1:
        return [sys.executable, script, *args]
    launcher = shutil.which("deepspeed", path=str(Path(sys.executable).parent)) or "deepspeed"
    return [launcher, "--num_gpus", str(ranks), "--master_port", str(_free_port()), script, *args]


def shm_buffers() -> set[str]:
    """Names of this user's DeepSpeed shm all-reduce buffers now in /dev/shm."""
    return {p.name for p in Path(SHM_DIR).glob(f"deepspeed_allreduce_buffer_{os.getuid()}_*")}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SHM_PROBE = """
import sys
from pathlib import Path
import torch
from icwm.train import engine
release, engine.release_shm_buffer = engine.release_shm_buffer, lambda: None   # keep the buffers to look at them
engine.init_distributed()
paths = [engine.shm_buffer_path(i) for i in range(torch.distributed.get_world_size())]
made = all(p.exists() for p in paths)
release()
torch.distributed.barrier()
Path(sys.argv[-1], f"rank_{torch.distributed.get_rank()}").write_text(f"{made} {not any(p.exists() for p in paths)}")
"""


@pytest.mark.skipif(not Path(SHM_DIR).is_dir(), reason="no /dev/shm on this OS")
@pytest.mark.parametrize("ranks", [1, 2])
def test_init_distributed_leaves_no_shm_buffer(tmp_path, ranks):
    """DeepSpeed's CPU shm op makes a 66 MB /dev/shm segment per rank and never unlinks it; init_distributed does
    (on one process, and on two ranks under the launcher, where every rank maps its peer's segment first)."""
    from deepspeed.accelerator import get_accelerator
    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if on_gpu() or builder is None or not builder.is_compatible():
        pytest.skip("DeepSpeed's CPU shm op is not in use here")
    probe = tmp_path / "probe.py"
    probe.write_text(SHM_PROBE)
    r = subprocess.run(launch_argv(ranks, str(probe), str(tmp_path)), env=clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = [(tmp_path / f"rank_{i}").read_text() for i in range(ranks)]
    assert seen == ["True True"] * ranks     # made (the names are DeepSpeed's), then gone


def test_pretrain_one_process_end_to_end(tmp_path):
    from icwm.infer import FewShotModel
    out = tmp_path / "run"
    r = run_pretrain(out, "train.steps=6", "train.eval_every=3", "train.log_every=1", "train.ckpt_every=3",
                     "train.dwa_window=1")
    cfg = cfg_with()
    n_params = count_parameters(build_model(cfg.model))
    assert f"parameters: {n_params:,} total" in r.stdout
    root = ckpt.ckpt_root(out)
    assert (root / ckpt.LATEST).read_text().strip() == "step_00000006"
    last = root / "step_00000006"
    for rel in ("config.yaml", "trainer_state.json", "rank_states/rank00000.pt", "engine/mp_rank_00_model_states.pt"):
        assert (last / rel).is_file(), rel
    assert (root / "step_00000003" / ckpt.STATE).is_file() and not list(root.glob(".tmp-*"))
    state = json.loads((last / ckpt.STATE).read_text())
    assert state["step"] == 6 and state["parameters"]["total"] == n_params and state["world_size"] == 1
    assert load_config(PretrainConfig, last / "config.yaml").train.steps == 6
    tb = scalars(out)
    for tag in ("lr", "grad_norm", "throughput/samples_per_s", "throughput/tokens_per_s", "loss/weighted"):
        assert len(tb[tag]) == 6 and all(math.isfinite(v) for _, v in tb[tag]), tag
    seen = [t for t in TASK_KEYS if f"loss/{t}" in tb]
    assert len(seen) >= 2 and all(f"dwa/{t}" in tb for t in TASK_KEYS)
    dwa_sum = sum(tb[f"dwa/{t}"][-1][1] for t in TASK_KEYS)
    assert dwa_sum == pytest.approx(len(TASK_KEYS), rel=1e-5)          # DWA weights sum to K
    evals = [t for t in tb if t.startswith("eval/")]
    assert any(t.endswith("/model") for t in evals) and any(not t.endswith("/model") for t in evals)
    assert {t.split("/")[1] for t in evals if t.endswith("/model")} == set(TASK_KEYS)
    engine_state = torch.load(last / "engine" / "mp_rank_00_model_states.pt", map_location="cpu",
                              weights_only=True)["module"]
    exported = FewShotModel.from_pretrained(out / "model").model.state_dict()
    assert exported.keys() == engine_state.keys()
    assert all(torch.equal(exported[k], engine_state[k]) for k in exported)


@pytest.mark.slow
def test_two_cpu_ranks_under_the_deepspeed_launcher(tmp_path):
    out = tmp_path / "run2"
    steps = 12
    only_det = [f"data.task_weights.{t}={1.0 if t == 'det' else 0.0}" for t in TASK_KEYS]  # one task: comparable losses
    run_pretrain(out, f"train.steps={steps}", "train.log_every=3", "train.ckpt_every=6", "optim.lr=1e-2", *only_det,
                 ranks=2, timeout=480)
    last = ckpt.ckpt_root(out) / "step_00000012"
    assert (last / "rank_states" / "rank00000.pt").is_file() and (last / "rank_states" / "rank00001.pt").is_file()
    assert (last / "engine" / "mp_rank_00_model_states.pt").is_file() and (out / "model" / "model.safetensors").is_file()
    state = json.loads((last / ckpt.STATE).read_text())
    assert state["world_size"] == 2 and state["global_batch"] == 2 * cfg_with().data.batch_size
    assert state["samples"] == steps * state["global_batch"] and state["tokens"] > state["samples"]
    loss = [v for _, v in scalars(out)["loss/weighted"]]
    assert len(loss) == 4 and all(math.isfinite(v) for v in loss)
    assert loss[-1] < loss[0] and loss[2] + loss[3] < loss[0] + loss[1]
