"""Fine-tuning on the DeepSpeed engine: two CPU ranks under the ``deepspeed`` launcher step like one process on the
same global batch (same losses, same adapter weights), the engine's ZeRO stage comes from the config, and a global
batch that does not split over the ranks is refused naming the field."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adapter_batches import tiny_cfg
from adapters_llm.distributed import engine_spec, micro_batch
from icwm.train.engine import SHM_DIR, ds_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "launch" / "finetune_llm.py"
DEBUG = ROOT / "configs" / "adapters" / "debug.yaml"
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT")
STEPS = 5
# one task, no dropout, a large learning rate: the weights move visibly in a few steps
ARGS = ("model.tasks=[cp]", f"train.steps={STEPS}", "train.batch_size=8", "train.lr=1e-2", "train.supervised_steps=0",
        "train.progress=false", "train.log_every=1", "data.eval_groups=0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out: Path, ranks: int, *extra: str) -> dict:
    """``python launch/finetune_llm.py`` (1 rank) or ``deepspeed --num_gpus 2 ...`` on CPU; returns metrics.json."""
    args = [str(SCRIPT), "--config", str(DEBUG), f"train.out_dir={out}", *ARGS, *extra]
    if ranks == 1:
        argv = [sys.executable, *args]
    else:
        launcher = shutil.which("deepspeed", path=str(Path(sys.executable).parent)) or "deepspeed"
        argv = [launcher, "--num_gpus", str(ranks), "--master_port", str(_free_port()), *args]
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env["OMP_NUM_THREADS"] = "1"
    before = set(Path(SHM_DIR).glob(f"deepspeed_allreduce_buffer_{os.getuid()}_*")) if Path(SHM_DIR).is_dir() else set()
    r = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    if Path(SHM_DIR).is_dir():      # DeepSpeed's per-rank CPU shm buffers are released (icwm.train.engine)
        assert set(Path(SHM_DIR).glob(f"deepspeed_allreduce_buffer_{os.getuid()}_*")) <= before
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_two_cpu_ranks_match_one_rank_on_the_same_global_batch(tmp_path: Path):
    one = _run(tmp_path / "one", 1)
    two = _run(tmp_path / "two", 2, "deepspeed.zero_stage=1")
    assert (one["world_size"], two["world_size"]) == (1, 2) and one["global_batch"] == two["global_batch"] == 8
    assert len(one["loss_history"]) == len(two["loss_history"]) == STEPS
    assert two["loss_history"] == pytest.approx(one["loss_history"], rel=1e-4, abs=1e-6)
    assert len(set(one["loss_history"])) == STEPS                 # the steps do move the model
    a = load_file(str(tmp_path / "one" / "final" / "adapter.safetensors"))
    b = load_file(str(tmp_path / "two" / "final" / "adapter.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("stage", [0, 2])
def test_engine_config_from_the_finetune_config(stage: int):
    cfg = tiny_cfg(f"deepspeed.zero_stage={stage}", "train.batch_size=12", "train.grad_clip=0.5")
    spec = engine_spec(cfg.train, cfg.deepspeed, n_steps=7, n_ranks=3)
    ds = ds_config(spec, "fp32")
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 1
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["gradient_clipping"] == (0.0 if stage == 0 else 0.5)   # ZeRO 0 clips with torch before step()
    assert spec.steps == 7 and spec.optim.lr == cfg.train.lr


def test_bad_global_batch_and_stage_name_the_field():
    with pytest.raises(ValueError, match=r"train\.batch_size"):
        micro_batch(10, 4)
    with pytest.raises(ValueError, match=r"deepspeed\.zero_stage"):
        tiny_cfg("deepspeed.zero_stage=3")
