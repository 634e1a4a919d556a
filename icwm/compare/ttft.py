"""ICL vs test-time fine-tuning (TTFT) on the latent families, with the same labelled data (../shared/ICL.md).

On the same episodes ``[E, k_max + 1, ...]`` (``icwm.eval.runner.episodes``, the query last) and for each k in
``ttft.ks``:

- ``icwm`` (native): reads the episode's first k pairs and the query, no weight update (``runner.model_query_pred``);
- ``<variant>+ttft``: one adapted-LLM variant (``ttft.variant``, or :func:`pick_variant` on the seen family) is, for
  every episode, reset to its trained adapter, fine-tuned on the episode's first k pairs with the comparison's few-shot
  path (``icwm.compare.llm.tune``: every trainable group, one stage, minibatches of min(batch, k) drawn from the k
  pairs) until its loss on those k pairs stops falling (evaluated every ``eval_every`` steps; ``patience``
  evaluations without a lower loss, or the ``max_steps`` cap; the best evaluation's weights kept), then it predicts
  the query and is reset again;
- the classical methods of the latent form, ``oracle``, ``blind``, ``in_context`` (and the task's other baselines),
  at each k (``runner.evaluate_chunk``).

eta per (method, k) is ``runner.eta_rows`` on the collected per-query values (``icwm.eval.eta``).

What the LLM reads. Its encoders take every ``X_KEYS`` input; the latent form omits theta's inputs (``LATENT_X``:
``snr_db``; for det also ``h``). ``fill="prior"`` feeds ``prior_<name>`` where the form stores one (the centre of the
system's range: the same for every episode, what the ``blind`` baseline designs for, so a blind input that says
nothing about the episode's theta) and zeros elsewhere (det's ``h``); ``fill="zero"`` feeds zeros throughout. Of
``latent_<name>`` only the shape is read (to size the zeros). The fine-tune sees the k pairs' filled inputs and labels
(``Y_KEYS``) and nothing else: its loss is the task's loss on those fields, except for pre_sr / pre_mm, whose task
losses need the true SNR (theta) and the solver's rate or optimum: there it is the MSE to the pairs' (lambda, p) labels
(:func:`label_loss`). The query's inputs are filled alike; its label is read by the metric only. The native model reads
the latent form as it is (omitted inputs absent, no ``latent_*`` / ``prior_*`` field).

Cost per episode (metrics ``steps``, ``evals``, ``seconds``, ``flops``, ``stopped_patience`` of ``<variant>+ttft``;
``seconds``, ``flops`` of ``icwm``): ``seconds`` is the wall time of the fine-tune plus the query's prediction (native:
its batched forward / E). FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmul, convolution and
attention FLOPs) once per (system, k) on the first episode:

    flops = steps x F_step(b) + evals x 2 x F_fwd(k) + F_fwd(1)

with F_step(b) one forward + backward on b = min(batch, k) pairs (about 6 x P x T_b, P the parameters the task's tokens
pass through, T_b the tokens of b pairs), F_fwd(n) a forward on n pairs (about 2 x P x T_n); each evaluation runs two
forwards on the k pairs (the Trainer's training and validation subsets are both those pairs). Native: F_fwd of its
batch / E.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from adapters_llm.early_stop import STOP_PATIENCE, Curve
from adapters_llm.train import LossFn, Pool
from icwm import tasks as task_registry
from icwm.compare import cache
from icwm.compare.config import CompareConfig, TTFTConfig
from icwm.compare.llm import LLMMethod, predict, shot_train_config, tune
from icwm.config import check, to_yaml
from icwm.data.shards import stable_seed
from icwm.eval import runner
from icwm.eval.config import EvalConfig
from icwm.tasks.common import LATENT_PREFIX, PRIOR_PREFIX
from icwm.wireless.sysconfig import SystemConfig

SUFFIX = "+ttft"                    # method name of the fine-tuned variant: <variant>+ttft
LABEL_LOSS_TASKS = ("pre_sr", "pre_mm")   # task losses that read theta: fine-tuned on the (lambda, p) labels instead
Costs = dict[tuple[str, int], dict[str, list[float]]]   # (method, k) -> cost metric -> per-episode values


@dataclass
class Episode:
    """One episode's test-time fine-tune: the query prediction ``[1, ...]``, its curve and cost."""

    pred: dict[str, torch.Tensor]
    curve: Curve
    seconds: float

    @property
    def steps(self) -> int:
        return self.curve.steps_run

    @property
    def evals(self) -> int:
        return len(self.curve.step)


@dataclass
class Setup:
    """What every system of the section shares."""

    tc: TTFTConfig
    ecfg: EvalConfig
    device: torch.device
    model: Optional[torch.nn.Module] = None     # native ICWM, or None
    model_ks: tuple[int, ...] = ()
    llm: Optional[LLMMethod] = None
    saved: Optional[dict[str, torch.Tensor]] = None   # the variant's trained adapter weights
    progress: bool = False                            # a bar over each chunk's fine-tuned episodes


def fill_inputs(task: ModuleType, sample: dict[str, torch.Tensor], fill: str) -> dict[str, torch.Tensor]:
    """The task's ``X_KEYS`` of ``sample`` ``[..., ...]``, the inputs the latent form omits filled with
    ``prior_<name>`` (``fill="prior"``, where there is one) or zeros shaped like ``latent_<name>``."""
    out = {}
    for key in task.X_KEYS:
        if key in sample:
            out[key] = sample[key]
        elif fill == "prior" and PRIOR_PREFIX + key in sample:
            out[key] = sample[PRIOR_PREFIX + key]
        else:
            out[key] = torch.zeros_like(sample[LATENT_PREFIX + key])
    return out


def episode_pools(task: ModuleType, sample: dict[str, torch.Tensor], e: int, k: int, fill: str) -> tuple[Pool, Pool]:
    """(demos, query) of episode ``e`` of ``sample`` ``[E, pair, ...]``: the first ``k`` pairs' filled inputs and
    labels ``[k, ...]``, and the query's (last pair's) filled inputs ``[1, ...]`` (no label)."""
    x = fill_inputs(task, {key: v[e] for key, v in sample.items() if torch.is_tensor(v)}, fill)   # [pair, ...]
    demos = {**{key: v[:k] for key, v in x.items()}, **{key: sample[key][e, :k] for key in task.Y_KEYS}}
    return demos, {key: v[-1:] for key, v in x.items()}


def _lam_p_mse(pred: dict, sample: dict) -> torch.Tensor:
    """MSE to the (lambda, p) labels: lam_p [N, user, 2] -> [N]."""
    return (pred["lam_p"] - sample["lam_p"]).pow(2).flatten(1).mean(-1)


def label_loss(task: ModuleType) -> LossFn:
    """The fine-tuning loss on labelled pairs: the task's loss, or the label MSE where the loss reads theta."""
    return _lam_p_mse if task.ID in LABEL_LOSS_TASKS else task.loss


def tune_predict(m: LLMMethod, task: ModuleType, demos: Pool, query: Pool, tc: TTFTConfig,
                 saved: dict[str, torch.Tensor], seed: int) -> Episode:
    """Reset ``m`` to ``saved``, fine-tune it on ``demos`` ``[k, ...]`` until their loss stops falling, predict
    ``query`` ``[1, ...]`` (inputs only), reset it again."""
    k = int(next(iter(demos.values())).shape[0])
    m.model.load_state_dict(saved, strict=False)
    tcfg = shot_train_config(m, tc.max_steps, tc.lr, min(tc.batch, k), eval_every=tc.eval_every,
                             patience=tc.patience, min_delta=tc.min_delta, seed=seed)
    seconds, curve = tune(m, task.ID, demos, tcfg, seed, label_loss(task), val=demos)
    t0 = time.perf_counter()
    pred = predict(m.model, task.ID, query)
    seconds += time.perf_counter() - t0
    m.model.load_state_dict(saved, strict=False)
    return Episode(pred, curve, seconds)


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs of one call of ``fn`` (``FlopCounterMode``: matmuls, convolutions, attention)."""
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def llm_flops(m: LLMMethod, task: ModuleType, demos: Pool, query: Pool, batch: int) -> tuple[float, float, float]:
    """(F_step(min(batch, k)), F_fwd(k), F_fwd(1)) of ``m`` on one episode's pools (module docstring); leaves no
    gradient behind and draws no random number (eval mode)."""
    dev = next(m.model.parameters()).device
    to = lambda p, n=None: {key: v[:n].to(dev) for key, v in p.items()}   # noqa: E731
    b, d, q = to(demos, batch), to(demos), to(query)
    loss = label_loss(task)
    m.model.eval()
    step = count_flops(lambda: loss(m.model(b, task.ID), b).float().mean().backward())
    m.model.zero_grad(set_to_none=True)
    with torch.no_grad():
        return step, count_flops(lambda: m.model(d, task.ID)), count_flops(lambda: m.model(q, task.ID))


def _add(values: runner.Values, key: tuple[str, int], metrics: dict[str, torch.Tensor]) -> None:
    slot = values.setdefault(key, {})
    for name, v in metrics.items():
        slot.setdefault(name, []).append(v.detach().float().reshape(-1).cpu())


def _cost(costs: Costs, key: tuple[str, int], **per_episode: list[float]) -> None:
    slot = costs.setdefault(key, {})
    for name, v in per_episode.items():
        slot.setdefault(name, []).extend(float(x) for x in v)


def _cat_preds(preds: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([p[key] for p in preds]) for key in preds[0]}


def llm_chunk(s: Setup, task: ModuleType, sample: dict, first: int, seeds: tuple, values: runner.Values,
              costs: Costs, flops: dict[int, tuple]) -> None:
    """``<variant>+ttft`` on every episode of ``sample`` at each k: metrics into ``values``, costs into ``costs``
    (``flops``: k -> the F terms, measured on the first episode seen); ``first``: global index of episode 0."""
    q, n = runner.query(sample), next(iter(sample.values())).shape[0]
    name = s.llm.name + SUFFIX
    for k in s.ecfg.ks:
        eps = []
        for e in tqdm(range(n), desc=f"ttft {task.ID} k={k}", unit="episode", leave=False, disable=not s.progress):
            demos, query = episode_pools(task, sample, e, k, s.tc.fill)
            if k not in flops:
                flops[k] = llm_flops(s.llm, task, demos, query, s.tc.batch)
            eps.append(tune_predict(s.llm, task, demos, query, s.tc, s.saved,
                                    stable_seed(*seeds, "tune", s.llm.name, k, first + e) % 2**31))
        f_step, f_k, f_1 = flops[k]
        _add(values, (name, k), task.metric(_cat_preds([ep.pred for ep in eps]), q))
        _cost(costs, (name, k), steps=[ep.steps for ep in eps], evals=[ep.evals for ep in eps],
              seconds=[ep.seconds for ep in eps], flops=[ep.steps * f_step + ep.evals * 2 * f_k + f_1 for ep in eps],
              stopped_patience=[ep.curve.stopped == STOP_PATIENCE for ep in eps])


def native_chunk(s: Setup, task: ModuleType, sample: dict, values: runner.Values, costs: Costs,
                 flops: dict[int, float]) -> None:
    """The native model at each k on the episodes of ``sample`` (no weight update), with its cost per episode."""
    q, n = runner.query(sample), next(iter(sample.values())).shape[0]
    for k in s.model_ks:
        t0 = time.perf_counter()
        pred = runner.model_query_pred(s.model, task, sample, k, s.device)
        dt = (time.perf_counter() - t0) / n
        if k not in flops:
            flops[k] = count_flops(lambda: runner.model_query_pred(s.model, task, sample, k, s.device)) / n
        _add(values, (runner.MODEL, k), task.metric(pred, q))
        _cost(costs, (runner.MODEL, k), seconds=[dt] * n, flops=[flops[k]] * n)


def llm_fits(s: Setup, task: ModuleType, sample: dict) -> bool:
    """Whether the variant's encoders take this system's inputs (fixed-size encoders: see the comparison's notes)."""
    _, query = episode_pools(task, sample, 0, 1, s.tc.fill)
    return s.llm is not None and predict(s.llm.model, task.ID, query) is not None


def score_system(s: Setup, task: ModuleType, family: str, system: SystemConfig) -> tuple[runner.Values, Costs,
                                                                                         list[str]]:
    """Per-query values, per-episode costs and notes of the classical methods and the fine-tuned variant on the
    episodes of one latent system (the native model: ``native_system``, on the same episodes)."""
    values: runner.Values = {}
    costs: Costs = {}
    notes: list[str] = []
    seeds = _seeds(s, task, family, system)
    llm_flop, fits = {}, None
    for c, sample in enumerate(runner.episodes(task, system, s.ecfg.episodes, max(s.ecfg.ks) + 1,
                                               s.ecfg.batch_size, seeds)):
        err = runner.evaluate_chunk(task, sample, s.ecfg.ks, None, [], torch.device("cpu"), values)
        notes += [f"ttft {task.ID}/{family}/{system.name}: {err}"] if err else []
        fits = llm_fits(s, task, sample) if fits is None else fits
        if fits:
            llm_chunk(s, task, sample, c * s.ecfg.batch_size, seeds, values, costs, llm_flop)
    if s.llm is not None and not fits:
        notes.append(f"ttft {task.ID}/{family}/{system.name}: input shapes unlike {s.llm.name}'s training systems "
                     "(fixed-size encoders): not fine-tuned")
    return values, costs, notes


def native_system(s: Setup, task: ModuleType, family: str, system: SystemConfig) -> tuple[runner.Values, Costs]:
    """The native model's per-query values and per-episode costs on ``score_system``'s episodes (same seeds)."""
    values: runner.Values = {}
    costs: Costs = {}
    flops: dict[int, float] = {}
    for sample in runner.episodes(task, system, s.ecfg.episodes, max(s.ecfg.ks) + 1, s.ecfg.batch_size,
                                  _seeds(s, task, family, system)):
        native_chunk(s, task, sample, values, costs, flops)
    return values, costs


def _seeds(s: Setup, task: ModuleType, family: str, system: SystemConfig) -> tuple:
    return (s.ecfg.seed, "ttft", family, system.name, task.ID)


def cost_rows(task: str, family: str, system: str, costs: Costs) -> list[dict]:
    """Mean per-episode cost rows (``runner.COLUMNS``; ``n`` = episodes)."""
    return [dict(zip(runner.COLUMNS, (task, family, system, method, k, name, sum(v) / len(v), len(v))))
            for (method, k), metrics in costs.items() for name, v in metrics.items() if v]


def unit_rows(task: str, family: str, system: str, values: runner.Values, costs: Costs) -> list[dict]:
    """Metric, eta and cost rows of one (task, family, system) (``system`` may be ``all``)."""
    return (runner.to_rows(task, family, system, values) + runner.eta_rows(task, family, system, values)
            + cost_rows(task, family, system, costs))


def _z(row: dict) -> float:
    z = row.get("z")
    return 0.0 if z is None or math.isnan(z) else max(-1e6, min(1e6, z))


def pick_variant(llms: list[LLMMethod], convergence: list[dict], name: str, tasks: list[str]
                 ) -> tuple[Optional[LLMMethod], str]:
    """The LLM variant to fine-tune at test time and why: ``name`` when given; else, among the variants with an LLM
    (``no_llm`` only when it is the sole one), the one that beats its task's trivial baseline on the seen family on
    the most ``tasks`` (``convergence`` rows, ``icwm.compare.converge``), ties broken by the mean z, then config order.
    """
    if name:
        found = [m for m in llms if m.name == name]
        check(len(found) == 1, "ttft.variant", f"a trained LLM method among {[m.name for m in llms]}", name)
        return found[0], f"variant {name} (named by ttft.variant)"
    cands = [m for m in llms if m.adapter != "no_llm"] or llms
    if not cands:
        return None, "no trained LLM method (llm.enabled=false or weights missing): native and classical only"

    def score(m: LLMMethod) -> tuple[int, float]:
        rows = [r for r in convergence if r["method"] == m.name and r["task"] in tasks]
        return sum(bool(r["converged"]) for r in rows), sum(map(_z, rows)) / max(1, len(rows))

    best = max(cands, key=score)      # max keeps the first of equals: config order
    n, z = score(best)
    return best, (f"variant {best.name}: beats the trivial baseline on the seen family on {n} of {len(tasks)} tasks "
                  f"(mean z {z:.3g}; the most among {[m.name for m in cands]})")


def _merge(into: dict, part: dict) -> None:
    for key, metrics in part.items():
        for name, v in metrics.items():
            into.setdefault(key, {}).setdefault(name, []).extend(v)


UNKEYED = ("enabled", "tasks", "families", "max_systems", "variant", "cache", "cache_dir")   # select, train nothing


def system_key(s: Setup, task: str, family: str, system: SystemConfig) -> str:
    """Hash of what determines one system's cached results (classical and fine-tuned, not the native model's, which
    are recomputed in milliseconds per episode): the section's settings, the episodes (seed, count, k), the system,
    and the identity of the fine-tuned variant (its weights)."""
    return cache.digest(key_parts(s, task, family, system))


def key_parts(s: Setup, task: str, family: str, system: SystemConfig) -> dict:
    """What ``system_key`` hashes."""
    tc = {k: v for k, v in dataclasses.asdict(s.tc).items() if k not in UNKEYED}
    e = s.ecfg
    llm = (s.llm.name, to_yaml(s.llm.cfg), cache.tensors_digest(s.saved)) if s.llm is not None else None
    return {"task": task, "family": family, "system": to_yaml(system), "ttft": tc, "llm": llm,
            "episodes": [e.seed, e.episodes, list(e.ks), e.batch_size]}


def _pack(part: dict) -> dict:
    return {f"{method}|{k}": {name: [float(x) for x in torch.cat(v).tolist()] if torch.is_tensor(v[0]) else v
                              for name, v in metrics.items()} for (method, k), metrics in part.items()}


def _unpack(part: dict, tensors: bool) -> dict:
    out = {}
    for key, metrics in part.items():
        method, k = key.rsplit("|", 1)
        out[(method, None if k == "None" else int(k))] = {name: [torch.tensor(v)] if tensors else list(v)
                                                          for name, v in metrics.items()}
    return out


def cached_system(s: Setup, task: ModuleType, family: str, system: SystemConfig, root: Optional[Path]
                  ) -> tuple[runner.Values, Costs, list[str]]:
    """``score_system``, or its results cached under ``root`` (``icwm.compare.cache``, key ``system_key``; None =
    always compute), plus the native model's (``native_system``, never cached: a new model reuses the fine-tuning).
    Costs (wall time) of a reused entry are the original run's."""
    hit = None
    if root is not None:
        key, label = system_key(s, task.ID, family, system), f"{task.ID}_{system.name}"
        hit = cache.load(root, label, key)
    if hit is not None:
        values, costs = _unpack(hit[0]["values"], True), _unpack(hit[0]["costs"], False)
        notes = hit[0]["notes"] + [f"ttft {task.ID}/{family}/{system.name}: results reused from {root} (same "
                                   "setup hash; seconds are the original run's; the native model's recomputed)"]
    else:
        values, costs, notes = score_system(s, task, family, system)
        if root is not None:
            cache.save(root, label, key, {"values": _pack(values), "costs": _pack(costs), "notes": notes})
    if s.model is not None:
        native_values, native_costs = native_system(s, task, family, system)
        values, costs = {**values, **native_values}, {**costs, **native_costs}
    return values, costs, notes


def run_ttft(cfg: CompareConfig, llms: list[LLMMethod], model: Optional[torch.nn.Module], convergence: list[dict],
             device: torch.device) -> tuple[list[dict], list[str]]:
    """The ``ttft`` section: rows (``runner.COLUMNS``: per system and pooled ``all``) of every method's metrics, eta
    and costs on the latent families' episodes, and notes. Each system's results are cached (``ttft.cache``)."""
    ecfg = cfg.ttft_eval_config()
    llm, why = pick_variant(llms, convergence, cfg.ttft.variant, ecfg.tasks)
    model_ks = tuple(runner.eval_ks(ecfg.ks, model.cfg.k_max)[1]) if model is not None else ()
    s = Setup(cfg.ttft, ecfg, device, model, model_ks, llm,
              {k: v.clone() for k, v in llm.model.adapter_state_dict().items()} if llm else None, cfg.progress)
    root = cfg.cache_root("ttft") if cfg.ttft.cache else None
    rows, notes, families = [], [f"ttft: {why}"], runner.load_families(ecfg)
    notes += [f"ttft: native {n}" for n in runner.beyond_k_max(ecfg.ks, model.cfg.k_max if model is not None else None)]
    for t in ecfg.tasks:
        task = task_registry.get(t)
        st = s if model is None or t in model.cfg.tasks else dataclasses.replace(s, model=None, model_ks=())
        if st.model is None and model is not None:
            notes.append(f"ttft {t}: the native model has no head for this task")
        for fam, systems in runner.units(ecfg, families, t):
            pooled_v, pooled_c = {}, {}
            for system in systems:
                if system.form != "latent":
                    notes.append(f"ttft {t}/{fam}/{system.name}: given-form system (no oracle / blind): skipped")
                    continue
                values, costs, n = cached_system(st, task, fam, system, root)
                rows += unit_rows(t, fam, system.name, values, costs)
                notes += n
                _merge(pooled_v, values)
                _merge(pooled_c, costs)
            rows += unit_rows(t, fam, runner.ALL, pooled_v, pooled_c) if pooled_v else []
    return rows, notes
