"""Validation curves and early stopping: the patience rule on hand-made scores, a fine-tuning run that stops once
its validation loss no longer improves and restores its best weights, and one that keeps improving to its cap with
a falling curve saved beside its checkpoint."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from adapter_batches import tiny_cfg
from adapters_llm.early_stop import STOP_CAP, STOP_PATIENCE, Curve, EarlyStopping, score
from adapters_llm.model import from_checkpoint
from adapters_llm.run import generate_pools, run_finetune
from adapters_llm.train import evaluate
from icwm import tasks as task_registry

SYSTEMS = Path(__file__).resolve().parents[2] / "configs" / "systems"


def test_patience_rule_on_hand_made_scores():
    stop = EarlyStopping(patience=2, min_delta=0.01, min_step=3)
    seq = [(0, 1.0), (1, 0.8), (2, 0.795), (3, 0.79), (4, 0.85)]     # 0.795 / 0.79: within min_delta of 0.8
    best = [stop.update(s, v) for s, v in seq]
    assert best == [True, True, False, False, False]
    assert stop.best == 0.8 and stop.best_step == 1
    assert not stop.should_stop(2) and stop.should_stop(4)            # 3 bad evaluations, past min_step
    stop.new_stage()
    assert not stop.should_stop(5) and stop.best == 0.8               # a new stage: counter reset, best kept
    assert not EarlyStopping(patience=0).should_stop(10 ** 6)         # patience 0: never stops early


def test_score_is_scale_free_and_keeps_the_sign():
    ref = {"pre_sr": -0.5, "cp": 2.0}
    assert score(ref, ref) == pytest.approx(0.0)                      # (-1 + 1) / 2
    assert score({"pre_sr": -1.0, "cp": 1.0}, ref) < score(ref, ref)   # both tasks improved
    c = Curve()
    c.add(0, 0, {"cp": 3.0}, {"cp": 2.0})
    c.add(5, 0, {"cp": 1.0}, {"cp": 1.0})
    assert c.val == [1.0, 0.5] and c.train == [1.5, 0.5] and c.val_task == {"cp": [2.0, 1.0]}


def _cfg(out: Path, *extra: str):
    return tiny_cfg("model.tasks=[cp]", f"data.families=[{SYSTEMS / 'debug.yaml'}]",
                    "data.system_names=[debug_uma_ula4]", "data.groups=2", "data.samples_per_group=16",
                    "data.val_groups=1", "data.eval_groups=0", "train.batch_size=8", "train.supervised_steps=0",
                    "train.eval_every=4", f"train.out_dir={out}", *extra)


def _val_loss(model, cfg) -> float:
    _, _, _, _, val = generate_pools(cfg, with_val=True)
    return evaluate(model, val, {"cp": task_registry.get("cp").loss})["cp"]["loss"]


def test_stops_when_validation_stops_improving_and_restores_the_best(tmp_path: Path):
    # lr 0.3 from the start overshoots: the validation loss stops falling after a few steps, so the run stops early
    cfg = _cfg(tmp_path / "run", "train.steps=200", "train.patience=2", "train.lr=0.3", "train.eval_every=2")
    model, s = run_finetune(cfg)
    curve = json.loads((tmp_path / "run" / "curve.json").read_text())
    assert curve == s["curve"] and curve["stopped"] == STOP_PATIENCE
    assert curve["steps_run"] < 200 and curve["steps_run"] == curve["step"][-1]
    assert curve["steps_run"] - curve["best_step"] == 2 * 2              # patience evaluations after the best
    best = curve["val_task"]["cp"][curve["step"].index(curve["best_step"])]
    assert min(curve["val_task"]["cp"]) == best
    assert _val_loss(model, cfg) == pytest.approx(best, rel=1e-5)        # the best weights were restored
    assert _val_loss(from_checkpoint(tmp_path / "run" / "final"), cfg) == pytest.approx(best, rel=1e-5)


def test_runs_to_the_cap_while_improving_with_a_falling_curve(tmp_path: Path):
    cfg = _cfg(tmp_path / "run", "train.steps=24", "train.patience=3", "train.lr=1e-2")
    _, s = run_finetune(cfg)
    c = s["curve"]
    assert c["step"] == [0, 4, 8, 12, 16, 20, 24] and c["stopped"] == STOP_CAP and c["steps_run"] == 24
    assert c["val"][0] == pytest.approx(1.0) and min(c["val"]) < 0.9     # relative to the loss at step 0
    assert c["val_task"]["cp"][-1] < c["val_task"]["cp"][0] and all(math.isfinite(v) for v in c["train"])
