"""Cached demonstrations: encode one cell's k demonstrations once, then answer any number of queries against them.

In an episode no demonstration token attends to the query (block-causal mask, ``transformer.py``), and RoPE runs over
the pair index, so every layer's keys and values of the k demonstration pairs (positions 0..k-1) and their final
x-token states are the same for every query. ``encode_demos`` computes them once (``DemoCache``); ``answer_queries``
runs the trunk only over the query pair's x-tokens (position k), attending to the cached keys and values, and equals
``ICWM.forward`` on each full episode at its query pair (up to float rounding). Two savings are exact: an x-token
never attends to a label token of its own pair, and the heads read x-token states only, so the query's label tokens
are not run; and RoPE scores depend on relative positions only, so the cached keys are stored rotated to j - k
(demonstration j relative to the query at k) and the query's own queries and keys need no rotation.

What is recomputed per query:
- tokens: the query pair alone through the family embedder, except where the embedder reads the demonstrations for
  this batch (det's in-context first guess, ``DetEmbed.fits_in_context``; precoding's fit, ``model.precoding_fit``):
  then the full episode, demonstrations broadcast, and the query pair's tokens and the head context are taken from it;
- head: the query pair alone, except for heads holding an ``InContextRidge`` (ce / cp / pf ``GridFit``, de / pe with
  ``cfg.icr``), which fit the demonstrations' residuals (which depend on their cached x-token states): those run on
  the demonstrations' cached states and context followed by the query's, and the query pair is kept.
The in-context ridge regression (``icr.py``) is the only component outside the trunk that mixes pairs, so these
rules follow from which modules hold one. Inference only: dropout is not applied.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from icwm import tasks
from icwm.config import check
from icwm.model.icr import InContextRidge
from icwm.model.icwm import ICWM, LATENT_HAT
from icwm.model.transformer import apply_rope, block_causal_mask, pair_positions, rope_tables
from icwm.tasks.common import nominal_keys

KV = tuple[torch.Tensor, torch.Tensor]


@dataclass
class DemoCache:
    """What the demonstrations contribute to every query of one cell (``encode_demos``).

    Args:
        task: task id.  k: number of demonstrations (0: an empty cache).
        demos: the demonstrations' input and label tensors [1, k, ...] (the task's keys present in the batch).
        kv: per transformer layer, keys and values of the demonstration tokens, [1, head, k (n_x + n_y), head_dim]
            each (empty at k = 0); the keys rotated (RoPE) to their pair's position relative to the query's, j - k.
        hx: the demonstrations' final x-token states [1, k, n_x, d] (None at k = 0).
        ctx: the family embedder's head context of the demonstrations (pair dim k; None at k = 0).
        x0: the demonstrations' x-tokens as the trunk receives them [1, k, n_x, d], read by the latent probe with
            ``model.probe_skip`` (None at k = 0 and without it).
    """

    task: str
    k: int
    demos: dict[str, torch.Tensor]
    kv: list[KV]
    hx: Optional[torch.Tensor]
    ctx: Any
    x0: Optional[torch.Tensor] = None


def _task_tensors(batch: dict, task: str) -> dict[str, torch.Tensor]:
    """The task's input and label tensors of ``batch`` and its stated nominal values (``prior_*``, read with
    ``model.nominal``); other fields, e.g. ``latent_*``, are never read."""
    spec = tasks.spec(task)
    return {key: batch[key] for key in (*spec.x_keys, *spec.y_keys, *nominal_keys(batch)) if key in batch}


def _check_demos(model: ICWM, demos: dict) -> tuple[str, int]:
    """Validate a demonstrations batch (tensors [1, k, ...]); returns (task, k)."""
    task, k = demos.get("task"), demos.get("k")
    check(task in model.cfg.tasks, "demos['task']", f"one of the model's tasks {model.cfg.tasks}", task)
    check(isinstance(k, int) and 0 <= k <= model.cfg.k_max, "demos['k']", f"an int in [0, {model.cfg.k_max}]", k)
    for key, v in _task_tensors(demos, task).items():
        check(v.dim() >= 2 and tuple(v.shape[:2]) == (1, k), f"demos[{key!r}]", f"shape [1, k={k}, ...]",
              tuple(v.shape))
    if k:
        model.check_batch({**demos, "k": k - 1})    # keys and tokeniser limits (check_batch counts k - 1 + 1 pairs)
    return task, k


def _check_queries(model: ICWM, cache: DemoCache, queries: dict) -> dict[str, torch.Tensor]:
    """Validate a query batch (tensors [Q, 1, ...]) against the cache; returns its task tensors."""
    check(queries.get("task") == cache.task, "queries['task']", f"the cache's task {cache.task!r}",
          queries.get("task"))
    model.check_batch({**queries, "k": 0})
    q = _task_tensors(queries, cache.task)
    if cache.k:
        check(set(q) == set(cache.demos), "queries", f"the demonstrations' keys {sorted(cache.demos)}", sorted(q))
        for key, v in q.items():
            want = tuple(cache.demos[key].shape[2:])
            check(tuple(v.shape[2:]) == want, f"queries[{key!r}]", f"per-sample shape {want} (as the demos)",
                  tuple(v.shape[2:]))
    return q


def _tokens(model: ICWM, task: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Embedded x [B, P, n_x, d] and y [B, P, n_y, d] plus role and task embeddings -> [B, P (n_x + n_y), d]."""
    tok = torch.cat((model.role_task(task, x, 0), model.role_task(task, y, 1)), dim=2)   # [B, P, n_x + n_y, d]
    return tok.flatten(1, 2)


def _qkv(attn: nn.Module, x: torch.Tensor, rope: Optional[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``Attention``'s projections: x [B, t, d] -> q, k (RoPE applied unless ``rope`` is None), v: [B, head, t,
    head_dim]."""
    b, t, _ = x.shape
    q, k, v = attn.qkv(x).view(b, t, 3, attn.n_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    if rope is None:
        return q, k, v
    return apply_rope(q, *rope), apply_rope(k, *rope), v


def _cached_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: Optional[KV],
                      mask: torch.Tensor) -> torch.Tensor:
    """Softmax attention of the query pair over the demonstrations' keys (all visible) and its own (``mask``).

    Args:
        q, k, v: the query pair's [Q, head, t, head_dim]; past: the demonstrations' (K, V) [1, head, T, head_dim] or
            None; mask: [t, t] bool over the own keys (True = may attend).
    Returns:
        [Q, head, t, head_dim].
    """
    if past is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    n_q, n_h, t, hd = q.shape
    kd, vd = past[0][0], past[1][0]                                         # [head, T, hd]
    n_t = kd.shape[1]
    qf = q.transpose(0, 1).reshape(n_h, n_q * t, hd)                        # [head, Q t, hd]: one matmul for all Q
    s_demo = (qf @ kd.transpose(-1, -2)).view(n_h, n_q, t, n_t).transpose(0, 1)           # [Q, head, t, T]
    s_own = (q @ k.transpose(-1, -2)).masked_fill(~mask, float("-inf"))                    # [Q, head, t, t]
    p = torch.softmax(torch.cat((s_demo, s_own), -1) * hd ** -0.5, dim=-1)
    p_demo = p[..., :n_t].transpose(0, 1).reshape(n_h, n_q * t, n_t)
    out = (p_demo @ vd).view(n_h, n_q, t, hd).transpose(0, 1)                              # [Q, head, t, hd]
    return out + p[..., n_t:] @ v


def _block(blk: nn.Module, x: torch.Tensor, rope: Optional[tuple], mask: torch.Tensor,
           past: Optional[KV]) -> tuple[torch.Tensor, KV]:
    """One pre-norm ``Block`` over x [B, t, d] (attending to ``past`` too when given) -> (x, own (k, v))."""
    q, k, v = _qkv(blk.attn, blk.norm1(x), rope)
    a = _cached_attention(q, k, v, past, mask)                             # [B, head, t, hd]
    x = x + blk.attn.proj(a.transpose(1, 2).flatten(2))
    return x + blk.ffn(blk.norm2(x)), (k, v)


def _encode_trunk(model: ICWM, tok: torch.Tensor, k: int, n_x: int, n_y: int) -> tuple[torch.Tensor, list[KV]]:
    """The trunk over the demonstration tokens [1, k (n_x + n_y), d] -> (final-normed states, per-layer (K, V) with
    the keys rotated to positions j - k relative to the query pair)."""
    trunk = model.trunk
    mask = block_causal_mask(k, n_x, n_y, tok.device)
    rope = rope_tables(pair_positions(k, n_x, n_y, tok.device), trunk.cfg.head_dim, trunk.cfg.rope_base, tok.dtype)
    back = rope_tables(torch.full((1,), -k, device=tok.device), trunk.cfg.head_dim, trunk.cfg.rope_base, tok.dtype)
    kv = []
    for blk in trunk.blocks:
        tok, (key, value) = _block(blk, tok, rope, mask, None)
        kv.append((apply_rope(key, *back), value))                       # R_{-k} R_j = R_{j-k}
    return trunk.norm(tok), kv


def _query_trunk(model: ICWM, tok: torch.Tensor, cache: DemoCache) -> torch.Tensor:
    """The trunk over the query pair's x-tokens [Q, n_x, d] at pair position k -> final-normed states [Q, n_x, d].

    The x-tokens of a pair attend to each other (and to the demonstrations); all sit at position k, so with the
    cached keys stored relative to k no rotation is applied.
    """
    trunk, n_x = model.trunk, tok.shape[1]
    mask = torch.ones(n_x, n_x, dtype=torch.bool, device=tok.device)
    for i, blk in enumerate(trunk.blocks):
        tok, _ = _block(blk, tok, None, mask, cache.kv[i] if cache.k else None)
    return trunk.norm(tok)


def reads_other_pairs(module: nn.Module, batch: dict) -> bool:
    """Whether a family embedder's or head's output for a pair reads other pairs: an ``InContextRidge`` does
    (``icr.py``), and a module may say when it uses its own (``DetEmbed.fits_in_context``); a module whose
    ``pools_pairs`` is true always does (``Sub6Embed``'s density of the demonstrations' offsets)."""
    if getattr(module, "pools_pairs", False):
        return True
    if not any(isinstance(m, InContextRidge) for m in module.modules()):
        return False
    uses = getattr(module, "fits_in_context", None)
    return uses is None or bool(uses(batch))


def _with_demos(demo: Optional[torch.Tensor], own: torch.Tensor) -> torch.Tensor:
    """Cached demonstration values [1, k, ...] broadcast to the queries, then the queries' [Q, 1, ...]: [Q, k+1, ...]
    (``own`` alone when ``demo`` is None)."""
    if demo is None:
        return own
    return torch.cat((demo.expand((own.shape[0],) + tuple(demo.shape[1:])), own), 1)


def encode_demos(model: ICWM, demos: dict) -> DemoCache:
    """Encode one set of demonstrations for ``answer_queries``.

    Args:
        model: the network (eval mode).
        demos: ``task``, ``k`` and the task's input and label tensors [1, k, ...] (the latent form omits its hidden
            inputs); at k = 0 the tensors may be absent.
    Returns:
        The ``DemoCache``.
    """
    task, k = _check_demos(model, demos)
    tensors = _task_tensors(demos, task)
    if k == 0:
        return DemoCache(task, 0, tensors, [], None, None)
    x, y, ctx = model.embedders[task](demos)                  # a pair's tokens read pairs <= it: as in the episode
    n_x, n_y, d = x.shape[2], y.shape[2], x.shape[3]
    h, kv = _encode_trunk(model, _tokens(model, task, x, y), k, n_x, n_y)
    hx = h.reshape(1, k, n_x + n_y, d)[:, :, :n_x]
    return DemoCache(task, k, tensors, kv, hx, ctx, model.role_task(task, x, 0) if model.cfg.probe_skip else None)


def _map_ctx(ctx: Any, fn) -> Any:
    """A head context with ``fn(name, tensor)`` applied to each tensor field (all are [B, P, ...]); others are kept."""
    return dataclasses.replace(ctx, **{f.name: fn(f.name, getattr(ctx, f.name)) for f in dataclasses.fields(ctx)
                                       if torch.is_tensor(getattr(ctx, f.name))})


def _embed_query(model: ICWM, cache: DemoCache, queries: dict, q: dict,
                 whole: bool) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Query tokens x [Q, 1, n_x, d], y [Q, 1, n_y, d] and the head context of the query pair [Q, 1, ...] or, with
    ``whole``, of the whole episode [Q, k+1, ...]."""
    emb = model.embedders[cache.task]
    if cache.k and reads_other_pairs(emb, queries):
        episode = {"task": cache.task, "k": cache.k, **{key: _with_demos(cache.demos[key], v) for key, v in q.items()}}
        x, y, ctx = emb(episode)                                       # [Q, k+1, ...]
        return x[:, -1:], y[:, -1:], ctx if whole else _map_ctx(ctx, lambda _, t: t[:, -1:])
    x, y, ctx = emb({**q, "task": cache.task, "k": 0})                # the query pair alone
    if whole:
        ctx = _map_ctx(ctx, lambda name, t: _with_demos(getattr(cache.ctx, name), t))
    return x, y, ctx


def answer_queries(model: ICWM, cache: DemoCache, queries: dict) -> dict[str, torch.Tensor]:
    """Predict Q queries, each against the cached demonstrations (equal to ``ICWM.forward`` on each episode
    [demos + query] at its query pair).

    Args:
        model: the network that encoded ``cache`` (eval mode).
        cache: from ``encode_demos``.
        queries: ``task`` and the task's tensors [Q, 1, ...] with the keys of the demonstrations (labels: zeros).
    Returns:
        ``ICWM.forward``'s outputs at the query pair, [Q, ...].
    """
    q = _check_queries(model, cache, queries)
    task, head = cache.task, model.heads[cache.task]
    whole = bool(cache.k) and reads_other_pairs(head, queries)         # the head fits the demonstrations
    x, y, ctx = _embed_query(model, cache, queries, q, whole)         # [Q, 1, n_x, d], [Q, 1, n_y, d]
    n_x = x.shape[2]
    hx = _query_trunk(model, _tokens(model, task, x, y)[:, :n_x], cache)[:, None]   # [Q, 1, n_x, d]
    if whole:
        hx = _with_demos(cache.hx, hx)                                 # [Q, k+1, n_x, d]
    x0 = None
    if model.cfg.probe_skip:
        x0 = model.role_task(task, x, 0)
        x0 = _with_demos(cache.x0, x0) if whole else x0
    latent = model.probe(task, hx, queries, x0, getattr(ctx, "probe_in", None),
                         getattr(ctx, "log_density", None), first_is_pair0=whole or not cache.k)
    out = {**head(hx, ctx, latent), **{LATENT_HAT + n: v for n, v in latent.items()}}
    return {key: v[:, -1] for key, v in out.items()}
