"""The pretraining loop: one sampler batch per micro step, DWA-weighted task loss, DeepSpeed step, logs,
held-out evaluation against the classical baselines, atomic checkpoints, resume, and the final export.

``pretrain(cfg)`` is what ``launch/pretrain.py`` calls, on one process (``python``) or under the DeepSpeed
launcher (any number of ranks, CPU/gloo or GPU/nccl).

Nothing silent: a non-finite loss or gradient stops the run with ``NonFiniteError`` naming the step, the task and
the batch it came from (``train.nonfinite=skip``: the batch is dropped and counted instead); a model with a NaN /
inf parameter is never saved; a second run into the same ``out_dir`` is refused (``RunLock``); a rank whose
launcher was killed stops within a step; the bf codebook of the data must match ``model.n_beams``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import torch

from icwm import tasks as task_registry
from icwm.config import check, to_dict, to_yaml
from icwm.data.episodes import EpisodeDataset, EpisodeLoader, make_source
from icwm.model import build_model, count_parameters
from icwm.train import checkpoint as ckpt
from icwm.train.config import PretrainConfig
from icwm.train.dwa import DWA
from icwm.train.engine import LauncherGone, LauncherWatch, build_engine, init_distributed, optimizer_step, own_clip
from icwm.train.logging import TaskMeter, TBLogger, TokenCounter, format_scalars
from icwm.train.objective import nonfinite_episodes, task_losses


class NonFiniteError(ValueError):
    """A non-finite loss, gradient or parameter; the message names the step, task and batch."""


def make_all_reduce(device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """SUM all-reduce across ranks of a CPU tensor (moved to ``device`` for the collective, returned on CPU)."""
    def reduce(t: torch.Tensor) -> torch.Tensor:
        if not (torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
            return t
        x = t.to(device)
        torch.distributed.all_reduce(x, op=torch.distributed.ReduceOp.SUM)
        return x.cpu()
    return reduce


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the batch's tensors to ``device`` (other entries pass through)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def query_metrics(task: str, pred: dict, batch: dict) -> dict[str, float]:
    """Task metrics of the query (last pair) averaged over the batch's episodes.

    Args:
        task: task id.  pred: predictions in the task's Y_KEYS (or baseline) form, ``[B, k+1, ...]``.
        batch: the episode batch, ``[B, k+1, ...]``.
    Returns:
        metric name -> mean over the B queries (over all pairs when a metric is not per pair).
    """
    vals = task_registry.get(task).metric(pred, batch)
    n_p = batch["k"] + 1
    n_b = next(v.shape[0] for v in batch.values() if torch.is_tensor(v))
    out = {}
    for name, v in vals.items():
        v = v.detach().float()
        out[name] = float(v.reshape(n_b, n_p)[:, -1].mean() if v.numel() == n_b * n_p else v.mean())
    return out


class Evaluator:
    """Held-out evaluation: fixed batches per task (k = eval k_max), model metrics vs classical baselines.

    Baseline scores are computed once and cached. Collective: every rank evaluates its share and the means are
    all-reduced.
    """

    def __init__(self, cfg: PretrainConfig, tasks: list[str], rank: int, world: int,
                 reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        base = cfg.eval_stream()
        self.batches: dict[str, list[dict]] = {}
        for t in tasks:
            ds = EpisodeDataset(dataclasses.replace(base, task_weights={t: 1.0}), rank, world)
            self.batches[t] = [ds.batch_at(0, rank + i * world) for i in range(cfg.train.eval_batches)]
        self.world, self.reduce, self.with_baselines = world, reduce, cfg.train.eval_baselines
        self._baselines: Optional[dict[str, float]] = None

    def _mean(self, scores: dict[str, float]) -> dict[str, float]:
        names = sorted(scores)
        t = self.reduce(torch.tensor([scores[n] for n in names], dtype=torch.float64))
        return {n: float(v) / self.world for n, v in zip(names, t.tolist())}

    def _score(self, fn: Callable[[str, dict], dict[str, dict]]) -> dict[str, float]:
        acc: dict[str, float] = {}
        for t, batches in self.batches.items():
            for b in batches:
                for method, pred in fn(t, b).items():
                    for name, v in query_metrics(t, pred, b).items():
                        key = f"eval/{t}/{name}/{method}"
                        acc[key] = acc.get(key, 0.0) + v / len(batches)
        return self._mean(acc)

    @torch.no_grad()
    def __call__(self, engine) -> dict[str, float]:
        """Scalars ``eval/<task>/<metric>/<method>`` for the model (and the cached baselines)."""
        engine.eval()
        dev = engine.device
        out = self._score(lambda t, b: {"model": {k: v.float().cpu() if v.is_floating_point() else v.cpu()
                                                  for k, v in engine(to_device(b, dev)).items()}})
        engine.train()
        if self.with_baselines and self._baselines is None:
            self._baselines = self._score(lambda t, b: task_registry.get(t).baselines(b))
        return {**out, **(self._baselines or {})}


def describe_batch(batch: dict) -> str:
    """Task, position and origin of a sampler batch, and where it holds NaN / inf (for error messages)."""
    origin = f"shard {batch['shard']!r}" if batch.get("shard") else f"generated for system {batch.get('system')!r}"
    bad = nonfinite_episodes(batch)
    if batch.get("groups") is not None and bad:   # shard records (group keys) of the episodes holding NaN / inf
        origin += ", records " + ", ".join(f"{batch['groups'][e]:06d}" for e in sorted({e for v in bad.values()
                                                                                     for e in v}))
    where = ("non-finite values in " + ", ".join(f"{k!r} (episodes {v})" for k, v in bad.items()) if bad
             else "its tensors are all finite")
    return (f"task {batch.get('task')!r}, batch {batch.get('index')} of epoch {batch.get('epoch')} ({origin}, "
            f"k={batch.get('k')}); {where}")


def data_codebooks(source) -> dict[str, int]:
    """bf codebook size per origin the source serves bf from: ``beam_gain``'s last dim in the first record of each
    system's first bf shard (shards), or each system's ``dual_band.codebook_size`` (generated)."""
    if "bf" not in source.tasks:
        return {}
    if not hasattr(source, "shards"):
        return {f"system {s.name!r}": s.dual_band.codebook_size for s in source.systems}
    from icwm.data.shards import read_shard
    first = {}
    for e in source.shards["bf"]:
        first.setdefault(e["system"], e["file"])
    return {f"system {name!r} (shard {file!r})": int(next(read_shard(source.root / file))[0]["beam_gain"].shape[-1])
            for name, file in first.items()}


def check_codebook(source, n_beams: int) -> None:
    """``ValueError`` on ``model.n_beams`` unless it equals the bf codebook size of every system in the data."""
    bad = {k: v for k, v in data_codebooks(source).items() if v != n_beams}
    check(not bad, "model.n_beams", "the bf data's codebook size, " + ", ".join(
        f"{v} beams for {k}" for k, v in bad.items()) + " (beam_gain's last dim)", n_beams)


@dataclasses.dataclass
class LoopState:
    """Counters of the loop (saved in ``trainer_state.json``)."""

    step: int = 0
    samples: int = 0
    tokens: int = 0
    skipped: int = 0            # batches dropped for a non-finite loss / steps left unapplied (train.nonfinite=skip)


class Trainer:
    """Everything one rank needs to train: engine, data, DWA, meters, logger (built by ``setup``)."""

    def __init__(self, cfg: PretrainConfig) -> None:
        self.cfg = cfg
        source = make_source(cfg.data)                          # checked before the (slow) DeepSpeed start-up
        self.task_ids = list(source.tasks)
        lacking = [t for t in self.task_ids if t not in cfg.model.tasks]
        check(not lacking, "model.tasks", f"every task the data source serves {self.task_ids} (or restrict them "
              "with data.task_weights)", list(cfg.model.tasks))
        check_codebook(source, cfg.model.n_beams)
        if cfg.eval_data is not None and cfg.train.eval_every:
            held_out = make_source(cfg.eval_data)
            missing = [t for t in self.task_ids if t not in held_out.tasks]
            check(not missing, "eval_data", f"a held-out source serving every training task {self.task_ids}",
                  f"one without {missing}")
            check_codebook(held_out, cfg.model.n_beams)
        self.lock = ckpt.RunLock(cfg.train.out_dir).acquire() if int(os.environ.get("RANK", "0")) == 0 else None
        try:
            self._build(cfg, source)
        except BaseException:
            self.close()
            raise

    def _build(self, cfg: PretrainConfig, source) -> None:
        """Process group, model, engine, data, DWA, meters and logger of this rank."""
        self.watch = LauncherWatch()                            # before the launcher could have died
        self.rank, self.world = init_distributed()
        torch.manual_seed(cfg.train.seed)                       # model init: identical on every rank
        model = build_model(cfg.model)
        if cfg.train.init_from:
            fresh = ckpt.init_weights(model, cfg.train.init_from)
            if self.rank == 0:
                print(f"[pretrain] weights from {cfg.train.init_from}; freshly initialised: {len(fresh)} tensors "
                      f"{sorted({k.rsplit('.', 2)[0] for k in fresh})}", flush=True)
        self.n_params = {"total": count_parameters(model), "trainable": count_parameters(model, True)}
        self.tokens = TokenCounter(model)
        self.engine, self.precision = build_engine(model, cfg)
        torch.manual_seed(cfg.train.seed + 1 + self.rank)       # dropout etc.: distinct per rank
        self.data = EpisodeDataset(cfg.data, self.rank, self.world, source=source)
        self.loader = EpisodeLoader(self.data, num_workers=cfg.train.num_workers)
        self.reduce = make_all_reduce(self.engine.device)
        self.dwa = DWA(self.task_ids, T=cfg.train.dwa_temperature, window=cfg.train.dwa_window,
                       all_reduce=self.reduce)
        self.meter = TaskMeter(self.task_ids, self.reduce)
        self.state = LoopState()
        self.out = Path(cfg.train.out_dir)
        self.tb = TBLogger(self.out / "tb", enabled=self.rank == 0)
        self.evaluator: Optional[Evaluator] = None
        self.history: list[dict] = []
        self._grad_norm, self._tokens_local = 0.0, 0
        self._window: list[dict] = []                           # this rank's batches of the current optimiser step

    def close(self) -> None:
        """Release ``out_dir``'s lock (the run is over, finished or failed)."""
        if self.lock is not None:
            self.lock.release()

    # ---- checkpoints -------------------------------------------------------------------------------------
    def trainer_state(self) -> dict:
        """JSON state saved by rank 0."""
        return {**dataclasses.asdict(self.state), "world_size": self.world, "parameters": self.n_params,
                "dwa": self.dwa.state_dict(), "precision": self.precision,
                "global_batch": self.cfg.global_batch(self.world)}

    def check_finite_model(self, action: str) -> None:
        """``NonFiniteError`` when any parameter holds NaN / inf on any rank (collective): nothing is written."""
        bad = ckpt.nonfinite_parameters(self.engine.module)
        n = self.reduce(torch.tensor([float(len(bad))], dtype=torch.float64))
        if n.item() > 0:
            names = bad[:5] or "(on another rank)"
            raise NonFiniteError(f"non-finite model at step {self.state.step}: parameters {names} hold NaN / inf; "
                                 f"not {action}")

    def save(self) -> Path:
        """Atomic checkpoint of the current step (collective); refused for a non-finite model."""
        self.check_finite_model(f"saving a checkpoint to {ckpt.ckpt_root(self.out)}")
        self._sync_tokens()
        rank_state = {"data": self.loader.state_dict(), "rng": ckpt.rng_state()}
        return ckpt.save_checkpoint(self.engine, self.out, self.state.step, to_yaml(self.cfg), self.trainer_state(),
                                    rank_state, keep_last=self.cfg.train.keep_last)

    def _sync_tokens(self) -> None:
        """Add every rank's tokens since the last sync to ``state.tokens`` (collective: ranks see different tasks)."""
        t = self.reduce(torch.tensor([float(self._tokens_local)], dtype=torch.float64))
        self.state.tokens += int(t.item())
        self._tokens_local = 0

    def resume(self) -> Optional[Path]:
        """Load the checkpoint ``train.resume`` selects, if any (collective)."""
        got = ckpt.resume_checkpoint(self.engine, self.cfg.train.resume, self.out)
        if got is None:
            return None
        for _, reason in got.skipped if self.rank == 0 else ():
            print(f"[pretrain] warning: {reason}; falling back to the previous good checkpoint {got.path}",
                  file=sys.stderr, flush=True)
        state, rank_state = got.state, got.rank_state
        self.state = LoopState(step=state["step"], samples=state["samples"], tokens=state["tokens"],
                               skipped=state.get("skipped", 0))
        self.dwa.load_state_dict(state["dwa"])
        self.loader.load_state_dict(rank_state["data"])
        ckpt.set_rng_state(rank_state["rng"])
        return got.path

    # ---- steps ---------------------------------------------------------------------------------------------
    def micro_step(self, batch: dict) -> bool:
        """Forward, DWA-weighted backward and DeepSpeed step of one sampler batch (collective).

        Returns False when the batch was dropped for a non-finite loss (``train.nonfinite=skip``; the caller draws
        another, on every rank alike). Raises ``NonFiniteError`` (``stop``) or ``LauncherGone``.
        """
        task = batch["task"]
        loss = task_losses(self.engine, to_device(batch, self.engine.device), self.cfg.train.latent_weight,
                           self.cfg.train.latent_given, self.cfg.train.latent_unapplied_weight)
        finite = bool(torch.isfinite(loss.detach()))
        n_bad = self._agree(not finite)
        if n_bad:
            self._nonfinite("loss", describe_batch(batch) if not finite else "on another rank", n_bad)
            return False
        self._window.append(batch)
        w = self.dwa.weight(task)
        self.engine.backward(loss * w)
        norm = optimizer_step(self.engine, self.cfg.optim.clip, own_clip(self.cfg))
        if norm is not None and not math.isfinite(norm):      # the step was not applied (see optimizer_step)
            self._nonfinite(f"gradient (norm {norm})", " | ".join(describe_batch(b) for b in self._window), 1)
        self._grad_norm = self._grad_norm if norm is None or not math.isfinite(norm) else norm
        value = float(loss.detach())
        n_ep = next(v.shape[0] for v in batch.values() if torch.is_tensor(v))
        n_tok = self.tokens.take()
        self.dwa.observe(task, value)
        self.meter.add(task, value, w, n_ep, n_tok)
        self.state.samples += n_ep * self.world
        self._tokens_local += n_tok
        return True

    def _agree(self, loss_bad: bool) -> int:
        """Ranks whose loss is non-finite (collective, so every rank drops or stops alike); ``LauncherGone``
        when any rank's launcher died."""
        gone = self.watch.gone()
        flags = self.reduce(torch.tensor([float(loss_bad), float(gone is not None)], dtype=torch.float64))
        if flags[1] > 0:
            raise LauncherGone(f"pretrain: rank {self.rank}: the launcher (pid {gone or 'of another rank'}) is "
                               f"gone; stopping at step {self.state.step + 1} without a checkpoint")
        return int(flags[0])

    def _nonfinite(self, what: str, where: str, count: int) -> None:
        """Stop with ``NonFiniteError``, or (``train.nonfinite=skip``) count ``count`` skipped batches and warn."""
        t = self.cfg.train
        msg = f"non-finite {what} at step {self.state.step + 1}: {where}"
        if t.nonfinite == "stop":
            raise NonFiniteError(f"{msg}; nothing was saved from this step (train.nonfinite=skip drops such batches)")
        self.state.skipped += count
        if self.state.skipped > t.max_skipped:
            raise NonFiniteError(f"{msg}; {self.state.skipped} batches skipped, more than train.max_skipped="
                                 f"{t.max_skipped}")
        if self.rank == 0:
            print(f"[pretrain] warning: skipped: {msg} ({self.state.skipped} so far)", file=sys.stderr, flush=True)

    def log(self) -> dict[str, float]:
        """Reduce the interval meters (collective) and write the scalars."""
        vals = self.meter.read()
        vals["lr"] = self.engine.get_lr()[0]
        vals["grad_norm"] = self._grad_norm
        vals["nonfinite/skipped"] = float(self.state.skipped)
        vals.update({f"dwa/{t}": w for t, w in self.dwa.weights.items()})
        self.tb.scalars(self.state.step, vals)
        self.history.append({"step": self.state.step, **vals})
        return vals

    def evaluate(self) -> dict[str, float]:
        """Held-out evaluation (collective); scalars written to TensorBoard."""
        if self.evaluator is None:
            self.evaluator = Evaluator(self.cfg, self.task_ids, self.rank, self.world, self.reduce)
        vals = self.evaluator(self.engine)
        self.tb.scalars(self.state.step, vals)
        self.history.append({"step": self.state.step, **vals})
        return vals

    def export(self) -> Optional[Path]:
        """Standalone model directory ``out_dir/model`` (safetensors + config.yaml + metadata.json) written by rank 0;
        collective (ZeRO-3 parameters are gathered first). Returns the directory on rank 0, else None."""
        import contextlib

        import deepspeed
        from icwm.infer import save_pretrained
        self.check_finite_model(f"exporting {self.out / 'model'}")
        meta = {"step": self.state.step, "samples": self.state.samples, "tokens": self.state.tokens,
                "parameters": self.n_params, "pretrain_config": to_dict(self.cfg)}
        module = self.engine.module
        gather = (deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None)
                  if self.cfg.deepspeed.zero_stage == 3 else contextlib.nullcontext())
        with gather:
            path = save_pretrained(module, self.cfg.model, self.out / "model", metadata=meta) if self.rank == 0 else None
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
        return path

    def run(self) -> dict:
        """Train to ``train.steps`` (resuming if asked) and return a summary (rank 0 meaningful); the lock on
        ``out_dir`` is released however the run ends."""
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> dict:
        from tqdm.auto import tqdm
        cfg, t = self.cfg, self.cfg.train
        resumed = self.resume()
        if self.rank == 0:
            print(f"[pretrain] parameters: {self.n_params['total']:,} total, {self.n_params['trainable']:,} "
                  f"trainable | ranks {self.world} | global batch {cfg.global_batch(self.world)} episodes | "
                  f"precision {self.precision} | ZeRO {cfg.deepspeed.zero_stage} | tasks {self.task_ids}"
                  + (f" | resumed from {resumed}" if resumed else ""), flush=True)
        saved = resumed is not None
        bar = tqdm(total=t.steps, initial=self.state.step, disable=self.rank != 0 or not t.progress,
                   desc="pretrain", dynamic_ncols=True)
        batches = iter(self.loader)
        while self.state.step < t.steps:
            self._window = []
            for _ in range(t.grad_accum):
                while not self.micro_step(next(batches)):       # a dropped batch (nonfinite=skip): draw the next
                    pass
            self.dwa.step()
            self.state.step += 1
            saved = False
            bar.update(1)
            if self.state.step % t.log_every == 0 or self.state.step == t.steps:
                bar.set_postfix_str(format_scalars(self.log()))
            if t.eval_every and self.state.step % t.eval_every == 0:
                self.evaluate()
            if t.ckpt_every and self.state.step % t.ckpt_every == 0:
                self.save()
                saved = True
        bar.close()
        return self.finish(saved)

    def finish(self, saved: bool) -> dict:
        """Final checkpoint, evaluation (if enabled) and export; writes ``out_dir/summary.json`` on rank 0."""
        path = ckpt.find_resume("auto", self.out) if saved else self.save()
        self._sync_tokens()
        every = self.cfg.train.eval_every
        if every and self.state.step % every:
            self.evaluate()
        model_dir = self.export() if self.cfg.train.export else None
        summary = {"step": self.state.step, "samples": self.state.samples, "tokens": self.state.tokens,
                   "skipped": self.state.skipped, "parameters": self.n_params, "checkpoint": str(path),
                   "model": str(model_dir), "history": self.history}
        if self.rank == 0:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        self.tb.close()
        return summary


def pretrain(cfg: PretrainConfig) -> dict:
    """Run pretraining as configured; returns the summary (step, samples, tokens, parameters, paths, history)."""
    return Trainer(cfg).run()
