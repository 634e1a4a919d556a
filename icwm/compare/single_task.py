"""Single-task small nets of the seed papers (MLP, CNN, GRU / LSTM, transformer predictor), one per task.

A net sees one sample's inputs only (no demonstrations) and is trained on the seen family with the task's own loss.
Its input layout is fixed at training time (``shapes``): systems with other per-sample shapes are out of its reach.

Tokens: every input key ``[batch, d0, ...]`` gives ``d0`` tokens (its rows: time steps for cp / ce / pf, antennas
or slots for det, subcarriers for bf / de / pe), each flattened to real features (real, imag and the row's log
power) and projected by its own linear layer; a 0-d key (``snr_db``) is one token. The body (the net kind) maps the
tokens ``[batch, seq, width]`` to a vector (MLP: the flat tokens through two layers; CNN, GRU / LSTM, transformer:
every token's output state, flattened, so a recurrent net need not squeeze a block of symbols or a beam sweep into
its last state); a linear head gives the flat output, decoded into the task's Y_KEYS.
Scales (input RMS, label mean / std) are constants computed once from the training pool. A residual net
(``single_task.residual``) adds its output to the task's first guess (``TaskSpec.first_guess``: LS + linear
interpolation for ce, repeat-last for cp), computed from the same inputs; its head starts at zero, so training starts
from that baseline (first guess + learned correction).
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch
from torch import nn

from adapters_llm.early_stop import STOP_CAP, STOP_PATIENCE, Curve, EarlyStopping, curve_point
from adapters_llm.encoders import real_features
from adapters_llm.train import draw, pool_size
from icwm.compare import cache
from icwm.config import check
from icwm.tasks.common import first_guess

Pool = dict[str, torch.Tensor]


def _token_features(v: torch.Tensor, scale: float) -> torch.Tensor:
    """One input tensor ``[batch, ...]`` -> ``[batch, rows, features]`` float (complex: real, imag, log power)."""
    v = v.reshape(v.shape[0], 1, 1) if v.dim() == 1 else v.reshape(v.shape[0], v.shape[1], -1)  # [b, rows, rest]
    if not v.is_complex():
        return v.float() / scale
    z = v / scale
    logp = torch.log10(z.abs().square().mean(-1, keepdim=True).clamp_min(1e-12))              # [b, rows, 1]
    return torch.cat([real_features(z).flatten(-2), logp], -1)


class Tokens(nn.Module):
    """Input keys -> tokens ``[batch, seq, width]`` (see the module docstring)."""

    def __init__(self, example: Pool, keys: tuple[str, ...], scales: dict[str, float], width: int) -> None:
        super().__init__()
        self.keys, self.scales = keys, scales
        feats = {k: _token_features(example[k][:1], scales[k]) for k in keys}
        self.proj = nn.ModuleDict({k: nn.Linear(f.shape[-1], width) for k, f in feats.items()})
        self.seq = sum(f.shape[1] for f in feats.values())

    def forward(self, x: Pool) -> torch.Tensor:
        return torch.cat([self.proj[k](_token_features(x[k], self.scales[k])) for k in self.keys], 1)


class Body(nn.Module):
    """Net kind body: tokens ``[batch, seq, width]`` -> features ``[batch, out_dim]`` (``out_dim`` attribute)."""

    def __init__(self, kind: str, seq: int, width: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "mlp":
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(seq * width, 4 * width), nn.GELU(),
                                     nn.Linear(4 * width, 4 * width), nn.GELU())
            self.out_dim = 4 * width
        elif kind == "cnn":
            self.net = nn.Sequential(nn.Conv1d(width, width, 3, padding=1), nn.GELU(),
                                     nn.Conv1d(width, width, 3, padding=1), nn.GELU(), nn.Flatten())
            self.out_dim = seq * width
        elif kind in ("gru", "lstm"):
            self.net = (nn.GRU if kind == "gru" else nn.LSTM)(width, width, num_layers=2, batch_first=True)
            self.out_dim = seq * width
        elif kind == "transformer":
            self.pos = nn.Parameter(torch.zeros(seq, width))
            layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
            self.net = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.out_dim = seq * width
        else:
            raise ValueError(f"single_task.nets: expected one of mlp, cnn, gru, lstm, transformer, got {kind!r}")

    def forward(self, tok: torch.Tensor) -> torch.Tensor:
        if self.kind == "cnn":
            return self.net(tok.transpose(1, 2))
        if self.kind in ("gru", "lstm"):
            return self.net(tok)[0].flatten(1)                   # every step's hidden state [b, seq * width]
        if self.kind == "transformer":
            return self.net(tok + self.pos).flatten(1)
        return self.net(tok)


class SingleTaskNet(nn.Module):
    """Tokens -> body -> linear head -> the task's Y_KEYS (complex labels rebuilt, lam_p softmax over users, bf
    logits, scalar regressions de-normalised)."""

    def __init__(self, task: ModuleType, kind: str, pool: Pool, width: int, residual: bool = False) -> None:
        super().__init__()
        self.task, self.task_id, self.y_keys, self.residual = task, task.ID, task.Y_KEYS, residual
        self.shapes = {k: tuple(pool[k].shape[1:]) for k in (*task.X_KEYS, *task.Y_KEYS)}
        scales = {k: _rms(pool[k]) for k in task.X_KEYS}
        self.tokens = Tokens(pool, task.X_KEYS, scales, width)
        self.body = Body(kind, self.tokens.seq, width)
        self.out_sizes = [self._out_size(k, pool) for k in task.Y_KEYS]
        self.head = nn.Linear(self.body.out_dim, sum(self.out_sizes))
        self.stats = {k: _label_stats(pool[k]) for k in task.Y_KEYS}      # key -> (mean, scale)
        self.complex_y = {k: pool[k].is_complex() for k in task.Y_KEYS}
        if residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def _out_size(self, key: str, pool: Pool) -> int:
        if key == "beam":
            return int(pool["beam_gain"].shape[-1])
        return math.prod(self.shapes[key]) * (2 if pool[key].is_complex() else 1)

    def forward(self, x: Pool) -> Pool:
        """x: the task's input tensors ``[batch, ...]`` -> predictions keyed by Y_KEYS ``[batch, ...]``."""
        out = self.head(self.body(self.tokens(x)))
        pred = {}
        for key, part in zip(self.y_keys, out.split(self.out_sizes, -1)):
            pred.update(self._decode(key, part))
        if self.residual:
            base = self.first_guess(x)
            pred = {k: v + base[k] if k in base else v for k, v in pred.items()}
        return pred

    def first_guess(self, x: Pool) -> Pool:
        """The task's first guess (``TaskSpec.first_guess``) from the inputs ``x`` ``[batch, ...]``."""
        return first_guess(self.task, x, self.shapes)

    def _decode(self, key: str, part: torch.Tensor) -> Pool:
        b, shape, (mean, std) = part.shape[0], self.shapes[key], self.stats[key]
        if key == "beam":
            return {"beam": part.argmax(-1), "beam_logits": part}
        if key == "lam_p":
            return {key: torch.softmax(part.reshape(b, *shape), dim=1)}       # [b, user, 2], columns sum to 1
        if self.complex_y[key]:                                                # complex label, RMS-scaled
            return {key: torch.view_as_complex(part.reshape(b, *shape, 2).contiguous()) * std}
        return {key: mean + std * part.reshape(b, *shape)}


def _rms(v: torch.Tensor) -> float:
    return float(v.abs().double().square().mean().sqrt().clamp_min(1e-12)) if v.dim() > 1 else \
        float(v.double().abs().mean().clamp_min(1.0))


def _label_stats(v: torch.Tensor) -> tuple[float, float]:
    """(mean, std) of a real label; (0, RMS) of a complex one; (0, 1) of an integer one."""
    if v.is_complex():
        return 0.0, _rms(v)
    if not v.is_floating_point():
        return 0.0, 1.0
    return float(v.double().mean()), float(v.double().std().clamp_min(1e-6))


def train_net(task: ModuleType, kind: str, pool: Pool, cfg, seed: int, val: Optional[Pool] = None
              ) -> tuple[SingleTaskNet, dict]:
    """Train a ``kind`` net on ``task`` with the task loss (``supervised_loss`` for the first ``cfg.supervised_steps``
    steps when the task has one); with ``val`` and ``cfg.eval_every > 0``, until the validation loss stops improving
    (``cfg.patience`` evaluations, not before ``cfg.min_steps``; ``cfg.steps`` the cap;
    ``adapters_llm.early_stop``), best weights restored.

    Args:
        pool: training samples ``[N, ...]`` (one per-sample shape). cfg: ``SingleTaskConfig``. seed: init and draws.
        val: validation samples ``[M, ...]`` (held-out samples of the training systems, same shapes).
    Returns:
        (net in eval mode, {"loss_first", "loss_last", "train_wall_s", "steps", "curve"}), ``curve`` a
        ``Curve.to_dict()`` or None.
    """
    check(pool_size(pool) >= 1, "single_task.train_groups", "a non-empty training pool", 0)
    with torch.random.fork_rng(devices=[]):          # nn initialisers use the global RNG: fork and seed
        torch.manual_seed(seed)
        net = SingleTaskNet(task, kind, pool, cfg.width, task.ID in cfg.residual)
    rng = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sup = getattr(task, "supervised_loss", None)
    curve = Curve() if val is not None and cfg.eval_every > 0 else None
    watch = Validation(task, pool, val, curve, EarlyStopping(cfg.patience, cfg.min_delta,
                                                                max(cfg.supervised_steps, cfg.min_steps)))
    losses, t0, step = [], time.perf_counter(), 0
    net.train()
    while step < cfg.steps and not (curve is not None and step % cfg.eval_every == 0 and watch(net, step)):
        batch = draw(pool, cfg.batch_size, rng)
        fn = sup if sup is not None and step < cfg.supervised_steps else task.loss
        loss = fn(net(batch), batch).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
    if curve is not None:
        stopped = step < cfg.steps
        if not stopped:
            watch(net, step)
        curve.stopped, curve.steps_run = (STOP_PATIENCE if stopped else STOP_CAP), step
        net.load_state_dict(watch.best)
    return net.eval(), {"loss_first": losses[0], "loss_last": losses[-1], "train_wall_s": time.perf_counter() - t0,
                        "steps": step, "curve": curve.to_dict() if curve is not None else None}


UNKEYED = ("enabled", "nets", "task_nets", "cache", "cache_dir")   # SingleTaskConfig fields that train nothing
NET_FORMAT = 2      # bump when a net's layout changes (2: GRU / LSTM read every step's state, not the last one's)


def train_cached(task: ModuleType, kind: str, pool: Pool, cfg, seed: int, val: Optional[Pool], root: Optional[Path],
                 data: dict) -> tuple[SingleTaskNet, dict]:
    """``train_net``, or the net cached under ``root`` (``icwm.compare.cache``) by a hash of the task, net kind,
    seed, training config and ``data`` (what determines ``pool`` and ``val``: systems, groups, seeds); ``root``
    None = always train. The log gains ``cached`` (the wall time and curve are the original training's)."""
    if root is None:
        net, log = train_net(task, kind, pool, cfg, seed, val)
        return net, {**log, "cached": False}
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in UNKEYED}
    key = cache.digest({"format": NET_FORMAT, "task": task.ID, "net": kind, "seed": seed, "config": fields,
                        "data": data})
    label = f"{task.ID}_{kind}"
    hit = cache.load(root, label, key)
    if hit is not None:
        net = SingleTaskNet(task, kind, pool, cfg.width, task.ID in cfg.residual)
        net.load_state_dict(hit[1])
        return net.eval(), {**hit[0], "cached": True}
    net, log = train_net(task, kind, pool, cfg, seed, val)
    cache.save(root, label, key, log, net.state_dict())
    return net, {**log, "cached": False}


class Validation:
    """Evaluations of a single-task net during training: validation loss and a same-sized training subset's (task
    loss, eval mode), the curve, the best weights; calling it returns whether training should stop."""

    def __init__(self, task: ModuleType, pool: Pool, val: Optional[Pool], curve: Optional[Curve],
                 stop: EarlyStopping) -> None:
        self.task, self.val, self.curve, self.stop = task, val, curve, stop
        n = pool_size(val) if val is not None else 0
        self.train = {k: v[:n] for k, v in pool.items()}
        self.best: Optional[dict[str, torch.Tensor]] = None

    @torch.no_grad()
    def _loss(self, net: SingleTaskNet, pool: Pool, batch: int = 256) -> float:
        n = pool_size(pool)
        total = sum(float(self.task.loss(net({k: v[i:i + batch] for k, v in pool.items()}),
                                         {k: v[i:i + batch] for k, v in pool.items()}).float().sum())
                    for i in range(0, n, batch))
        return total / n

    def __call__(self, net: SingleTaskNet, step: int) -> bool:
        net.eval()
        t = self.task.ID
        new_best = curve_point(self.curve, self.stop, step, 0, {t: self._loss(net, self.train)},
                               {t: self._loss(net, self.val)})
        if new_best or self.best is None:
            self.best = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.train()
        return self.stop.should_stop(step)


def fits(net: SingleTaskNet, sample: Pool) -> bool:
    """Whether ``sample`` (``[batch, ...]`` tensors) has the per-sample shapes the net was trained on."""
    return all(tuple(sample[k].shape[1:]) == s for k, s in net.shapes.items() if k in sample)
