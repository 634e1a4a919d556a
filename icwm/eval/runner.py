"""Evaluation runner: episodes -> per-query metrics of the model at each k and of every classical baseline.

For each task x system, ``episodes`` episodes of ``k_top + 1`` pairs are generated once (``task.generate``: one
group = one episode, demos first, the query last). The model is evaluated at each ``k`` on the first ``k`` demos
plus the query; the baselines on the same queries. Baselines that read the episode's other pairs (ce LMMSE, the
pf band map, the bf / de / pe k-NN fingerprinting and pe's RSRP calibration of docs/contracts.md: ``CONTEXT_TASKS``)
run at each ``k >= 1`` on the same truncated episodes as the model; all others see the query alone and have no ``k``
(``None``).

A row is ``{"task", "family", "system", "method", "k", "metric", "value", "n"}``: the mean of the task's
``metric()`` over the ``n`` finite query values; ``system == "all"`` pools a family's systems; a metric ``nmse``
also yields ``nmse_mean_db`` = 10 log10 of the mean NMSE. As the model answers the same queries at every k, its
rows at each k after the first add, per metric ``m``, the standard error of its paired change from the previous k
(``m_se_step``) and from the first k (``m_se_k0``): the sampling error the "improves with k" checks allow for.
On latent-form episodes the model's rows also hold ``probe_err_<latent>``: the absolute error of its latent probe's
estimate (what it inferred from k demos).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, Iterator, Optional

import torch
from tqdm import tqdm

from icwm import tasks as task_registry
from icwm.config import check
from icwm.data.config import load_family
from icwm.data.shards import stable_seed
from icwm.eval.config import EvalConfig
from icwm.eval.eta import eta, per_query_metric
from icwm.model.icwm import LATENT_HAT
from icwm.tasks.common import LATENT_PREFIX, is_latent, nominal_keys
from icwm.wireless.sysconfig import SystemConfig

MODEL = "icwm"                   # method name of the native model in the results
ALL = "all"                      # system name of the pooled rows of a family
CONTEXT_TASKS = tuple(t for t, s in task_registry.SPECS.items() if s.context)   # baselines reading the demos
COLUMNS = ("task", "family", "system", "method", "k", "metric", "value", "n")
SE_STEP, SE_K0 = "_se_step", "_se_k0"   # suffixes of the model's paired standard-error rows
PROBE_ERR = "probe_err_"         # metric prefix: the latent probe's absolute error (model rows, latent form)
DB_PER_LN = 10.0 / math.log(10.0)
GetTask = Callable[[str], ModuleType]
Values = dict[tuple[str, Optional[int]], dict[str, list[torch.Tensor]]]   # (method, k) -> metric -> [chunks]


@dataclass
class EvalResult:
    """Rows of results plus what is needed to read them (systems, k values, model description)."""

    rows: list[dict]
    systems: dict[str, list[SystemConfig]]      # family -> systems
    ks: list[int]                                # k values of the episodes (model and context baselines)
    model_ks: list[int]                          # k values the model was evaluated at ([] without a model)
    model: str = "none"                          # description of the evaluated model
    notes: list[str] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


SETUPS = "setups"                # family name of the (task, system) operating points of ``cfg.setups``


def load_families(cfg: EvalConfig) -> dict[str, list[SystemConfig]]:
    """Family name -> its systems (the first ``cfg.max_systems`` when > 0); ``setups`` last when there are any."""
    out = {}
    for entry in cfg.families:
        path = cfg.family_path(entry)
        check(path.is_file(), "families", f"an existing family file ({path})", entry)
        systems = load_family(path)
        out[cfg.family_name(entry)] = systems[: cfg.max_systems] if cfg.max_systems else systems
    if cfg.setups:
        out[SETUPS] = list({s.system.name: s.system for s in cfg.setups}.values())
    return out


def units(cfg: EvalConfig, families: dict[str, list[SystemConfig]], task: str) -> list[tuple[str, list]]:
    """(family, systems) evaluated for ``task``: every system of the families (the task's own family files when
    ``cfg.task_prefix`` names one), only the task's own setups."""
    own = {s.system.name for s in cfg.setups if s.task == task}
    out = []
    for f, systems in families.items():
        if f == SETUPS:
            systems = [s for s in systems if s.name in own]
        elif task in cfg.task_prefix:
            entry = next(e for e in cfg.families if cfg.family_name(e) == f)
            path = cfg.family_path(entry, task)
            check(path.is_file(), f"task_prefix.{task}", f"an existing family file ({path})", entry)
            systems = load_family(path)[: cfg.max_systems or None]
        out.append((f, systems))
    return [(f, systems) for f, systems in out if systems]


def eval_ks(ks: list[int], model_k_max: Optional[int]) -> tuple[list[int], list[int]]:
    """(episode k values, model k values): ``ks`` capped at the model's ``k_max`` when there is a model."""
    model_ks = [k for k in ks if model_k_max is not None and k <= model_k_max]
    check(model_k_max is None or len(model_ks) > 0, "ks", f"at least one k <= the model's k_max ({model_k_max})", ks)
    return (model_ks if model_k_max is not None else list(ks)), model_ks


def beyond_k_max(ks: list[int], model_k_max: Optional[int]) -> list[str]:
    """A note naming the ``ks`` above the model's ``k_max`` (``eval_ks`` leaves them out), or none."""
    if model_k_max is None:
        return []
    beyond = [k for k in ks if k not in eval_ks(ks, model_k_max)[1]]
    return [f"ks {beyond} not evaluated: beyond the model's k_max ({model_k_max})"] if beyond else []


def take(sample: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """The first ``k`` demos and the query (last pair) of episodes ``[E, pair, ...]`` -> ``[E, k + 1, ...]``."""
    n_pairs = next(iter(sample.values())).shape[1]
    idx = torch.tensor(list(range(k)) + [n_pairs - 1])
    return {key: v[:, idx] for key, v in sample.items()}


def query(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The query position of ``[E, pair, ...]`` tensors: ``[E, ...]``."""
    return {key: v[:, -1] for key, v in x.items()}


def episodes(task: ModuleType, system: SystemConfig, n: int, n_pairs: int, chunk: int,
             seed_parts: tuple) -> Iterator[dict[str, torch.Tensor]]:
    """Episodes of one task and system, generated in chunks with a generator seeded per chunk.

    Yields:
        dicts of tensors ``[E, n_pairs, ...]`` (E <= chunk, n in total), the query last.
    """
    for c, start in enumerate(range(0, n, chunk)):
        rng = torch.Generator().manual_seed(stable_seed(*seed_parts, c))
        yield task.generate(system, min(chunk, n - start), n_pairs, rng)


def model_inputs(task: ModuleType, sample: dict) -> dict[str, torch.Tensor]:
    """The model's x and y tensors of episodes ``[E, pair, ...]``: on latent-form samples the inputs the form omits
    (``LATENT_X``) stay absent (the model infers them from the demonstrations); the ``prior_*`` fields (the system's
    stated nominal values, which the blind baseline designs at) are passed, ``latent_*`` (the truth) never."""
    return {key: sample[key] for key in (*task_registry.x_keys(task, sample), *task.Y_KEYS, *nominal_keys(sample))}


def model_query_pred(model: torch.nn.Module, task: ModuleType, sample: dict, k: int,
                     device: torch.device) -> dict[str, torch.Tensor]:
    """The model's prediction of the query from the first ``k`` demos: every model output at the query ``[E, ...]``
    on CPU (Y_KEYS form, plus the latent probe's ``latent_hat_*`` and, for precoding in the latent form, the
    ``snr_db`` the metric renders ``lam_p`` at).

    The query's labels are replaced by zeros before the forward pass (block-causal: they cannot leak anyway).
    """
    sub = take(model_inputs(task, sample), k)
    for key in task.Y_KEYS:
        sub[key] = sub[key].clone()
        sub[key][:, -1] = 0
    batch = {"task": task.ID, "k": k, **{key: v.to(device) for key, v in sub.items()}}
    with torch.inference_mode():
        pred = model(batch)
    return {key: v[:, -1].cpu() for key, v in pred.items()}


def probe_errors(pred: dict[str, torch.Tensor], q: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``probe_err_<name>`` [E]: absolute error (natural units: dB, degrees) of the latent probe's estimate of each
    scalar latent the query's episode drew (latent form only; what the model inferred from its k demos)."""
    hats = {key[len(LATENT_HAT):]: v for key, v in pred.items() if key.startswith(LATENT_HAT)}
    return {PROBE_ERR + n: (v.float() - q[LATENT_PREFIX + n].float()).abs() for n, v in hats.items()
            if LATENT_PREFIX + n in q}


def _add(values: Values, method: str, k: Optional[int], metrics: dict[str, torch.Tensor]) -> None:
    slot = values.setdefault((method, k), {})
    for name, v in metrics.items():
        slot.setdefault(name, []).append(v.detach().float().reshape(-1).cpu())


def evaluate_chunk(task: ModuleType, sample: dict, ks: list[int], model: Optional[torch.nn.Module],
                   model_ks: list[int], device: torch.device, values: Values) -> Optional[str]:
    """Add the query metrics of the model (each k) and of every baseline on the episodes ``sample`` to ``values``.

    Returns:
        None, or a note: the message of a ``ValueError`` the task's baselines raised (e.g. exhaustive ML detection
        beyond its user limit; the model's metrics are kept).
    """
    q = query(sample)
    for k in model_ks if model is not None else []:
        pred = model_query_pred(model, task, sample, k, device)
        _add(values, MODEL, k, {**task.metric(pred, q), **probe_errors(pred, q)})
    try:
        _baselines(task, sample, ks, q, values)
    except ValueError as err:
        return f"baselines failed: {err}"
    return None


def _baselines(task: ModuleType, sample: dict, ks: list[int], q: dict, values: Values) -> None:
    """Baseline metrics: on latent episodes every method at every k (oracle and blind read no demos; in_context
    with k = 0 is blind); on given-form ones context baselines at each k >= 1, the others on the query alone
    (k None)."""
    if is_latent(sample) or task.ID in CONTEXT_TASKS:
        for k in (k for k in ks if k >= 1 or is_latent(sample)):
            for method, pred in task.baselines(take(sample, k)).items():
                _add(values, method, k, task.metric(query(pred), q))
    else:
        for method, pred in task.baselines(take(sample, 0)).items():
            _add(values, method, None, task.metric(query(pred), q))


def summarise(metrics: dict[str, torch.Tensor]) -> list[tuple[str, float, int]]:
    """(metric, mean over finite values, count) per metric; ``nmse`` also gives ``nmse_mean_db``."""
    out = []
    for name, v in metrics.items():
        ok = v[torch.isfinite(v)].double()
        mean = float(ok.mean()) if ok.numel() else float("nan")
        out.append((name, mean, int(ok.numel())))
        if name == "nmse":
            out.append(("nmse_mean_db", 10.0 * torch.log10(torch.tensor(mean)).item(), int(ok.numel())))
    return out


def paired_se(cur: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> list[tuple[str, float, int]]:
    """Standard error of the mean change ``cur - ref`` over queries finite in both: (metric, se, count).

    ``cur`` and ``ref`` hold per-query values of the same queries in the same order. ``nmse`` also gives
    ``nmse_mean_db`` (the change of 10 log10 of the mean, to first order: 10 / ln 10 * (x / mean x - x' / mean x')).
    """
    out = []
    for name, a in cur.items():
        b = ref[name]
        ok = torch.isfinite(a) & torch.isfinite(b)
        a, b, n = a[ok].double(), b[ok].double(), int(ok.sum())
        se = lambda d: float(d.std() / math.sqrt(n)) if n > 1 else float("nan")   # noqa: E731
        out.append((name, se(a - b), n))
        if name == "nmse" and n > 1:
            out.append(("nmse_mean_db", DB_PER_LN * se(a / a.mean() - b / b.mean()), n))
    return out


def to_rows(task: str, family: str, system: str, values: Values) -> list[dict]:
    """Result rows of one (task, family, system) from collected per-query values (plus the model's paired
    standard errors, module docstring)."""
    rows = []
    cats = {key: {name: torch.cat(chunks) for name, chunks in metrics.items()} for key, metrics in values.items()}
    for (method, k), cat in cats.items():
        for name, value, n in summarise(cat):
            rows.append(dict(zip(COLUMNS, (task, family, system, method, k, name, value, n))))
    ks = sorted(k for method, k in cats if method == MODEL)
    for prev, k in zip(ks, ks[1:]):
        for suffix, ref in ((SE_STEP, prev), (SE_K0, ks[0])):
            for name, se, n in paired_se(cats[MODEL, k], cats[MODEL, ref]):
                rows.append(dict(zip(COLUMNS, (task, family, system, MODEL, k, name + suffix, se, n))))
    return rows


def eta_rows(task: str, family: str, system: str, values: Values) -> list[dict]:
    """ICL efficiency rows (icwm.eval.eta) of every method evaluated at each k, on families whose baselines include
    ``oracle`` and ``blind`` (the latent form): metrics ``eta`` and ``eta_se`` per (method, k) and, under method
    ``oracle``, ``gap`` and ``gap_se`` (oracle - blind in the primary metric's scale; eta is NaN when the gap is
    within two standard errors: the family teaches nothing for this task)."""
    name, scale = per_query_metric(task)
    cat = lambda key: torch.cat(values[key][name]) if key in values and name in values[key] else None  # noqa: E731
    rows = []
    for k in sorted({k for _, k in values if k is not None}):
        b, o = cat(("blind", k)), cat(("oracle", k))
        if b is None or o is None:
            continue
        for method in sorted({m for m, kk in values if kk == k and m not in ("oracle", "blind")}):
            vals = cat((method, k))
            if vals is None or vals.numel() != b.numel():   # not run on every pooled system (e.g. exhaustive search)
                continue
            e = eta(vals, b, o, scale)
            rows += [dict(zip(COLUMNS, (task, family, system, method, k, m, v, e.n)))
                     for m, v in (("eta", e.eta), ("eta_se", e.eta_se))]
        e = eta(o, b, o, scale)
        rows += [dict(zip(COLUMNS, (task, family, system, "oracle", k, m, v, e.n)))
                 for m, v in (("gap", e.gap), ("gap_se", e.gap_se))]
    return rows


def _merge(into: Values, part: Values) -> None:
    for key, metrics in part.items():
        for name, chunks in metrics.items():
            into.setdefault(key, {}).setdefault(name, []).extend(chunks)


def run(cfg: EvalConfig, model: Optional[torch.nn.Module], families: dict[str, list[SystemConfig]],
        get_task: Optional[GetTask] = None, progress: bool = True) -> EvalResult:
    """Evaluate ``model`` (or only the baselines when None) on every task x family x system of ``cfg``.

    Args:
        cfg: evaluation config (tasks, ks, episodes, batch_size, seed, device).
        model: an ``ICWM`` in eval mode on ``cfg.device`` (its ``cfg.k_max`` caps the k values), or None.
        families: family name -> systems (``load_families``).
        get_task: task id -> task module (default ``icwm.tasks.get``).
    Returns:
        ``EvalResult`` with per-system rows and pooled (``system == "all"``) rows.
    """
    get_task = get_task or task_registry.get
    device = resolve_device(cfg.device)
    ks, model_ks = eval_ks(cfg.ks, model.cfg.k_max if model is not None else None)
    n_sys = sum(len(s) for t in cfg.tasks for _, s in units(cfg, families, t))
    rows: list[dict] = []
    notes = [f"model has no head for task {t}: baselines only" for t in cfg.tasks
             if model is not None and t not in model.cfg.tasks]
    notes += beyond_k_max(cfg.ks, model.cfg.k_max if model is not None else None)
    bar = tqdm(total=n_sys * cfg.episodes, unit="episode", disable=not progress, desc="eval")
    for t in cfg.tasks:
        task = get_task(t)
        use = None if model is not None and t not in model.cfg.tasks else model
        for fam, systems in units(cfg, families, t):
            pooled: Values = {}
            for system in systems:
                bar.set_postfix_str(f"{t}/{fam}/{system.name}")
                values: Values = {}
                for sample in episodes(task, system, cfg.episodes, ks[-1] + 1, cfg.batch_size,
                                       (cfg.seed, "eval", fam, system.name, t)):
                    err = evaluate_chunk(task, sample, ks, use, model_ks, device, values)
                    notes += [f"{t}/{fam}/{system.name}: {err}"] if err else []
                    bar.update(next(iter(sample.values())).shape[0])
                rows += to_rows(t, fam, system.name, values) + eta_rows(t, fam, system.name, values)
                _merge(pooled, values)
            rows += to_rows(t, fam, ALL, pooled)
            rows += eta_rows(t, fam, ALL, pooled)
    bar.close()
    return EvalResult(rows, families, ks, model_ks, notes=list(dict.fromkeys(notes)))


def load_model(spec: str, device: torch.device) -> tuple[Optional[torch.nn.Module], str]:
    """The ``ICWM`` to evaluate (eval mode, on ``device``) and its description; ``(None, "none")`` for ``"none"``.

    Args:
        spec: ``"none"``, ``"shipped"`` (icwm/assets/icwm-small) or a directory written by ``save_pretrained``.
    """
    if spec == "none":
        return None, "none (baselines only)"
    from icwm.infer import FewShotModel
    from icwm.model import count_parameters
    fsm = FewShotModel.from_pretrained(None if spec == "shipped" else spec, device=device)
    desc = f"{spec} ({fsm.cfg.name}, {count_parameters(fsm.model) / 1e6:.3g} M parameters, k_max={fsm.cfg.k_max})"
    return fsm.model, desc
