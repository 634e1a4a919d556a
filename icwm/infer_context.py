"""Serving one cell: its demonstrations are validated, normalised and encoded once (``FewShotModel.context``) and any
number of queries is answered against them (``FewShotModel.predict_many``), with ``predict``'s input checks,
normalisation and natural outputs; each answer equals ``predict(task, demos, query)`` to float rounding.

The encoding is ``icwm.model.cache``: the demonstrations' keys and values in every transformer layer and what the
heads read from them; per query the trunk runs over the query pair's tokens only. ce / cp / pf are normalised by
the RMS of the demonstrations' inputs (``grid_scale``; ``predict`` uses the same scale), so a context is normalised
once; at k = 0 each query is normalised by its own RMS, as in ``predict``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional

import torch

from icwm.config import check
from icwm.infer import SPECS, given_inputs
from icwm.infer_checks import GRID_KEYS, check_consistency, check_ranges, grid_scale, scale_grids
from icwm.model.cache import DemoCache, answer_queries, encode_demos

if TYPE_CHECKING:
    from icwm.infer import FewShotModel


@dataclass
class Context:
    """One cell's demonstrations, ready for queries (``FewShotModel.context``).

    Args:
        task: task id.  k: number of demonstrations.
        demos: the validated demonstrations [1, k, ...] on the model's device (ce / cp / pf divided by ``scale``;
            the latent form without its hidden inputs); {} at k = 0.
        scale: ce / cp / pf with k >= 1: [1] float64, the demonstrations' input RMS (``grid_scale``); else None.
        cache: the encoded demonstrations.
        nominal: the cell's stated nominal values {``prior_<name>``: [1] float32} (``FewShotModel.predict``).
    """

    task: str
    k: int
    demos: dict[str, torch.Tensor]
    scale: Optional[torch.Tensor]
    cache: DemoCache
    nominal: dict[str, torch.Tensor]


def make_context(fsm: "FewShotModel", task: str, demos: Optional[Mapping[str, Any]],
                 nominal: Optional[Mapping[str, Any]] = None) -> Context:
    """Validate, normalise and encode one set of demonstrations ([k, ...] arrays; None or {} for k = 0) with the
    cell's stated nominal values (``FewShotModel.predict``)."""
    check(task in fsm.cfg.tasks, "task", f"one of the model's tasks {fsm.cfg.tasks}", task)
    demos = demos or {}
    check(isinstance(demos, Mapping), "demos", "a dict of arrays (or None)", type(demos).__name__)
    xs, ys = given_inputs(task, demos, demos), SPECS[task][1]       # the latent form: hidden inputs are absent
    check(not demos or set(demos) == set(xs) | set(ys), "demos", f"exactly the keys {sorted({**xs, **ys})}",
          sorted(demos))
    k = fsm._count_demos(demos, True)
    d = {key: fsm._load(demos[key], f"demos[{key!r}]", spec, True, 1) for key, spec in {**xs, **ys}.items()} \
        if k else {}
    scale = None
    if k:
        check_consistency(task, {x: d[x][0] for x in xs}, {y: d[y][0] for y in ys}, fsm.cfg)
        check_ranges(task, d, "demos")
        if task in GRID_KEYS:
            _, d, scale = grid_scale(task, {}, d)
    d = {key: v.to(fsm.device) for key, v in d.items()}
    nom = fsm.nominal_inputs(task, nominal, xs, 1)
    with torch.inference_mode():
        cache = encode_demos(fsm.model, {"task": task, "k": k, **d,
                                         **{key: v[:, None].expand(1, k) for key, v in nom.items()}})
    return Context(task, k, d, scale, cache, nom)


def _query_batch(fsm: "FewShotModel", ctx: Context, q: dict, labels: dict) -> dict:
    """The model's query batch: ``task`` and tensors [Q, 1, ...] on the model's device."""
    dev = fsm.device
    n_q = next(iter(q.values())).shape[0]
    nominal = {key: v.expand(n_q)[:, None] for key, v in ctx.nominal.items()}
    return {"task": ctx.task, "k": 0, **{key: v[:, None].to(dev) for key, v in {**q, **labels}.items()}, **nominal}


def answer(fsm: "FewShotModel", ctx: Context, queries: Mapping[str, Any]) -> dict[str, Any]:
    """Answer queries (X_KEYS -> [Q, ...] or [...]) against ``ctx``: ``predict``'s outputs, [Q, ...] (or [...])."""
    task = ctx.task
    check(isinstance(queries, Mapping), "query", "a dict of arrays", type(queries).__name__)
    xs = given_inputs(task, ctx.demos, queries)
    q, single, as_numpy = fsm.read_query(queries, xs)
    n_b = next(iter(q.values())).shape[0]
    for key in xs:
        if ctx.k:
            check(ctx.demos[key].shape[2:] == q[key].shape[1:], f"query[{key!r}]",
                  f"per-sample shape {tuple(ctx.demos[key].shape[2:])} of the demos", tuple(q[key].shape[1:]))
    labels = {key: v.cpu().expand((n_b,) + tuple(v.shape[1:]))
              for key, v in fsm._query_labels(task, q, ctx.demos, n_b).items()}
    check_consistency(task, q, labels, fsm.cfg)
    check_ranges(task, q, "query")
    scale = torch.ones(n_b, dtype=torch.float64)
    if task in GRID_KEYS and ctx.k:
        scale = ctx.scale.expand(n_b)
        q, _ = scale_grids(task, q, {}, scale)
    elif task in GRID_KEYS:
        q, _, scale = grid_scale(task, q, {})
    with torch.inference_mode():
        pred = answer_queries(fsm.model, ctx.cache, _query_batch(fsm, ctx, q, labels))
    return fsm._outputs(task, pred, {key: v.to(fsm.device) for key, v in q.items()}, scale, single, as_numpy)
