"""Few-shot inference: hand the model k demonstration pairs and a query; it answers with no weight update.

    model = FewShotModel.from_pretrained()                 # shipped icwm-small, or a directory
    out = model.predict("pre_sr", demos={"h": H_k, "snr_db": s_k, "lam_p": L_k}, query={"h": H, "snr_db": s})
    out["W"], out["lam_p"]
    out = model.predict("pre_sr", demos={"h": H_k, "lam_p": L_k}, query={"h": H})   # latent form: SNR not given
    out["estimated_snr_db"]                                # what the model read off the demonstrations
    ctx = model.context("pre_sr", demos={"h": H_k, "snr_db": s_k, "lam_p": L_k})   # one cell's demos, encoded once
    out = model.predict_many(ctx, {"h": H_q, "snr_db": s_q})                       # Q queries [Q, ...] against them

Inputs are numpy or torch arrays in their natural per-sample shapes (docs/contracts.md), one episode (demos
``[k, ...]``, query ``[...]``) or a batch of episodes (demos ``[B, k, ...]``, query ``[B, ...]``). Outputs come back in
the same kind (numpy in, numpy out). A model directory holds ``model.safetensors``, ``config.yaml`` (the resolved
``ModelConfig``) and ``metadata.json``; ``save_pretrained`` writes it atomically.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

import numpy as np
import torch

from icwm import tasks
from icwm.config import check, check_device, load_config, to_yaml
from icwm.tasks.common import KIND_DTYPE, PRIOR_PREFIX
from icwm.infer_checks import (GRID_KEYS, LABELS, POWER_DB, SNR_DB, check_consistency, check_finite,  # noqa: F401
                               check_ranges, grid_scale)
from icwm.model import ICWM, LATENT_HAT, ModelConfig, build_model, count_parameters

if TYPE_CHECKING:
    from icwm.infer_context import Context

SHIPPED = Path(__file__).resolve().parent / "assets" / "icwm-small"
WEIGHTS, CONFIG, METADATA = "model.safetensors", "config.yaml", "metadata.json"
CP_T_OUT = 4  # cp prediction horizon used when an episode has no demonstrations to read it from

# task -> ({x key: (natural ndim, kind)}, {y key: (natural ndim, kind)}) of its TaskSpec; kind: "c" complex, "f" real,
# "i" integer.
SPECS: dict[str, tuple[dict[str, tuple[int, str]], dict[str, tuple[int, str]]]] = {
    t: (dict(s.x), dict(s.y)) for t, s in tasks.SPECS.items()}
ESTIMATE = "estimated_"   # output key prefix of the model's estimates of a task's scalar latents


def _as_tensor(x: Any, field: str, kind: str) -> torch.Tensor:
    """numpy / torch / list -> tensor of the kind's dtype; ValueError on wrong dtype or non-finite values."""
    if not torch.is_tensor(x):
        try:
            x = torch.from_numpy(np.array(x))  # a copy: 0-d stays 0-d, strides normalised
        except (TypeError, ValueError) as err:
            raise ValueError(f"{field}: expected a numpy array or torch tensor, got {type(x).__name__}") from err
    ok = {"c": x.is_complex(), "f": not x.is_complex() and x.dtype != torch.bool,
          "i": not x.is_complex() and not x.is_floating_point() and x.dtype != torch.bool}[kind]
    check(ok, field, {"c": "a complex array", "f": "a real array", "i": "an integer array"}[kind], str(x.dtype))
    x = x.to(KIND_DTYPE[kind])
    if kind != "i":
        check(bool(torch.isfinite(x).all()), field, "finite values (no NaN / inf)", "non-finite entries")
    return x


class FewShotModel:
    """A trained ``ICWM`` answering few-shot queries (eval mode, no gradients).

    Args:
        model: the network.  cfg: its configuration.
    """

    def __init__(self, model: ICWM, cfg: ModelConfig) -> None:
        self.model, self.cfg = model.eval(), cfg

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
                        overrides: Optional[Mapping[str, Any]] = None) -> "FewShotModel":
        """Load a model directory (``model.safetensors`` or a weights-only ``model.pt``, plus ``config.yaml``).

        Args:
            path: directory; None loads the shipped model at ``icwm/assets/icwm-small``.
            device: where to put the model.
            overrides: ``ModelConfig`` fields to change at load time, e.g. ``{"precoding_refine": False}`` for the
                precoding read-out alone (fields that change the weights' shapes fail the load).
        Raises:
            FileNotFoundError: the directory or its files are missing (with how to make them).
            ValueError: ``model: <what> (<file>)`` for a corrupt or truncated file, weights that do not fit the
            configuration, or a ``device`` this machine lacks.
        """
        root = Path(path) if path is not None else SHIPPED
        how = ("train one with `python launch/pretrain.py --config configs/pretrain/small.yaml` and export it with "
               "`icwm.infer.save_pretrained(model, cfg, DIR)`, then pass `path=DIR`")
        if not (root / CONFIG).is_file():
            raise FileNotFoundError(f"model: no {CONFIG} in {str(root)!r}; {how}")
        check_device(str(device))
        overrides = dict(overrides or {})
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        for key in overrides:
            check(key in fields, "overrides", f"ModelConfig fields ({', '.join(sorted(fields))})", key)
        cfg = load_config(ModelConfig, root / CONFIG, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
        model = build_model(cfg)
        try:
            model.load_state_dict(load_weights(root, how), strict=True)
        except RuntimeError as err:   # missing / unexpected names, wrong shapes
            raise ValueError(f"model: weights do not fit {CONFIG}: {str(err).splitlines()[0]} ({root})") from err
        return cls(model.to(device), cfg)

    def predict(self, task: str, demos: Optional[Mapping[str, Any]], query: Mapping[str, Any],
                nominal: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """Answer the query of one episode (or a batch of episodes) from its demonstrations.

        Latent form: an input of the task's ``TaskSpec.latent_x`` (``snr_db`` for pre_* / ce / cp / pf; ``h`` and
        ``snr_db`` for det) may be left out of the query and of every demonstration; the model then infers it from
        the demonstrations (det without ``h`` needs k >= 1: the number of users is read from the demos' ``x``).

        Args:
            task: task id, one of the model's tasks.
            demos: X_KEYS and Y_KEYS -> [k, ...] (or [B, k, ...]); None or {} for k = 0.
            query: X_KEYS -> [...] (or [B, ...]), less the hidden inputs of the latent form.
            nominal: for a model trained with ``model.nominal``, the stated nominal value of a hidden latent, e.g.
                ``{"snr_db": 10.0}`` (pre_*: the SNR the link is planned for), ``{"panel_offset_deg": 0.0}`` (bf),
                ``{"power_offset_db": 0.0}`` (de / pe); a float or [B]. The latent is then estimated as an offset
                from it (what the blind baseline designs at); None: no nominal is stated.
        Returns:
            Natural outputs for the query ([...] or [B, ...]): pre_* ``lam_p`` [user, 2] and ``W`` [ant, user]
            (contract convention, ||W||_F^2 = 10^(snr_db/10); in the latent form designed at, and with the power
            of, ``estimated_snr_db``); det ``x`` [slot, user] complex and ``x_idx`` (16-QAM hard decisions); ce
            ``h``, cp ``h_fut``, pf ``h_dl`` complex; bf ``beam`` and ``beam_scores`` [n_beams] (probabilities); de
            ``distance_m``; pe ``pathloss_db``. Also the model's estimate of each scalar latent of the task,
            ``estimated_<name>`` ([] or [B] float32; ``icwm.model.probe_latents``): ``estimated_snr_db`` (pre_*,
            det, ce, cp, pf; in the given form the model's reading of the given SNR), bf
            ``estimated_panel_offset_deg``, de / pe ``estimated_power_offset_db`` (0 for a cell the given form
            describes). Always finite.
        Raises:
            ValueError: naming the field, for inputs the model cannot take (keys, shapes, dtypes, NaN / inf, snr_db
            outside ``SNR_DB``, channel power outside ``POWER_DB``, demo labels outside ``LABELS``, a hidden input
            given in some pairs only, a ``nominal`` the model does not read or for an input the query gives), or
            when the model's output is not finite.
        """
        batch, single, as_numpy, scale = self.episode(task, demos, query)
        n_b, n_p = batch[next(iter(SPECS[task][1]))].shape[:2]
        batch.update({key: v[:, None].expand(n_b, n_p)
                      for key, v in self.nominal_inputs(task, nominal, batch, n_b).items()})
        with torch.inference_mode():
            pred = self.model({k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()})
        last = {k: v[:, -1] for k, v in pred.items()}  # the query's predictions [B, ...]
        q = {k: batch[k][:, -1].to(self.device) for k in SPECS[task][0] if k in batch}
        return self._outputs(task, last, q, scale, single, as_numpy)

    def context(self, task: str, demos: Optional[Mapping[str, Any]],
                nominal: Optional[Mapping[str, Any]] = None) -> "Context":
        """Validate, normalise and encode one set of demonstrations once, for any number of queries
        (``predict_many``; ``icwm.infer_context``).

        Args:
            task: task id.  demos: X_KEYS and Y_KEYS -> [k, ...], one set (the latent form omits its hidden inputs);
                None or {} for k = 0.  nominal: the cell's stated nominal values, as in ``predict`` (floats).
        Raises:
            ValueError: as ``predict``, for demonstrations the model cannot take.
        """
        from icwm.infer_context import make_context
        return make_context(self, task, demos, nominal)

    def predict_many(self, context: "Context | str", queries: Mapping[str, Any],
                     demos: Optional[Mapping[str, Any]] = None,
                     nominal: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """Answer a batch of queries against one set of demonstrations encoded once: equal to ``predict(task, demos,
        query)`` on each query (to float rounding), at a fraction of the cost for many queries.

        Args:
            context: from ``context``, or a task id (then ``demos`` are encoded first).
            queries: X_KEYS -> [Q, ...] (or [...] for one query), the form (given / latent) of the demonstrations.
            demos, nominal: with a task id, as in ``context``.
        Returns:
            ``predict``'s natural outputs and estimates, [Q, ...] (or [...]).
        Raises:
            ValueError: as ``predict``.
        """
        from icwm.infer_context import Context, answer
        check(isinstance(context, str) or (demos is None and nominal is None), "demos / nominal",
              "given with a task id only (a Context holds its own)", "given with a Context")
        ctx = context if isinstance(context, Context) else self.context(context, demos, nominal)
        return answer(self, ctx, queries)

    def _outputs(self, task: str, last: dict, q: dict, scale: torch.Tensor, single: bool,
                 as_numpy: bool) -> dict[str, Any]:
        """The model's predictions at the query [B, ...] -> ``predict``'s outputs (checked finite, ce / cp / pf times
        ``scale`` [B], one episode unbatched, numpy when the inputs were). ``q``: the query's given inputs [B, ...]."""
        check_finite(task, last)
        est = {ESTIMATE + k[len(LATENT_HAT):]: v for k, v in last.items() if k.startswith(LATENT_HAT)}
        out = natural_outputs(task, {k: v for k, v in last.items() if not k.startswith(LATENT_HAT)}, q)
        if task in GRID_KEYS:
            out = {k: v * scale.to(v.device).view((-1,) + (1,) * (v.dim() - 1)).to(v.dtype) for k, v in out.items()}
        out = {**out, **est}
        check_finite(task, out)
        out = {k: (v[0] if single else v).cpu() for k, v in out.items()}
        return {k: v.numpy() for k, v in out.items()} if as_numpy else out

    def episode(self, task: str, demos: Optional[Mapping[str, Any]],
                query: Mapping[str, Any]) -> tuple[dict, bool, bool, torch.Tensor]:
        """Validate inputs and assemble the model batch (tensors [B, k+1, ...], zero query labels; the inputs the
        latent form omits stay absent).

        Returns:
            (batch, single episode?, inputs were numpy?, scale [B]): ce / cp / pf channels in the batch are divided by
            ``scale`` (``grid_scale``; the outputs are to be multiplied by it), 1 for the other tasks.
        """
        check(task in self.cfg.tasks, "task", f"one of the model's tasks {self.cfg.tasks}", task)
        check(isinstance(query, Mapping), "query", "a dict of arrays", type(query).__name__)
        demos = demos or {}
        check(isinstance(demos, Mapping), "demos", "a dict of arrays (or None)", type(demos).__name__)
        xs, ys = given_inputs(task, demos, query), SPECS[task][1]
        q, single, as_numpy = self.read_query(query, xs)
        check(not demos or set(demos) == set(xs) | set(ys), "demos", f"exactly the keys {sorted({**xs, **ys})}",
              sorted(demos))
        k = self._count_demos(demos, single)
        d = {key: self._load(demos[key], f"demos[{key!r}]", spec, single, 1) for key, spec in {**xs, **ys}.items()} \
            if k else {}
        n_b = next(iter(q.values())).shape[0]
        for key, v in d.items():
            check(v.shape[0] == n_b, key, f"batch size {n_b} (as the query)", tuple(v.shape))
        for key in xs:
            if k:
                check(d[key].shape[2:] == q[key].shape[1:], f"demos[{key!r}]",
                      f"per-sample shape {tuple(q[key].shape[1:])} of the query", tuple(d[key].shape[2:]))
        labels = self._query_labels(task, q, d, n_b)
        check_consistency(task, q, labels, self.cfg)
        if k:   # every demonstration, flattened to [B * k, ...]
            check_consistency(task, {x: d[x].flatten(0, 1) for x in xs}, {y: d[y].flatten(0, 1) for y in ys}, self.cfg)
        check_ranges(task, q, "query")
        check_ranges(task, d, "demos")
        scale = torch.ones(n_b, dtype=torch.float64)
        if task in GRID_KEYS:
            q, d, scale = grid_scale(task, q, d)
        batch = {"task": task, "k": k}
        for key in xs:
            batch[key] = torch.cat((d[key], q[key][:, None]), 1) if k else q[key][:, None]
        for key in ys:
            batch[key] = torch.cat((d[key], labels[key][:, None]), 1) if k else labels[key][:, None]
        return batch, single, as_numpy, scale

    def nominal_names(self, task: str) -> tuple[str, ...]:
        """The latents of ``task`` whose stated nominal value this model reads (``model.nominal``; () otherwise)."""
        return tuple(self.model.nominal.get(task, ()))

    def nominal_inputs(self, task: str, nominal: Optional[Mapping[str, Any]], given: Mapping[str, Any],
                       n_b: int) -> dict[str, torch.Tensor]:
        """Validated nominal values -> ``{prior_<name>: [B] float32}`` (the fields the model reads; {} for None).

        ``given``: the episode's given inputs (a nominal for an input the query gives is an error)."""
        if not nominal:
            return {}
        check(isinstance(nominal, Mapping), "nominal", "a dict {latent name: value}", type(nominal).__name__)
        names = self.nominal_names(task)
        check(bool(names), "nominal", f"None: this model reads no nominal value for {task} (model.nominal is "
              f"{self.cfg.nominal})", sorted(nominal))
        out = {}
        for name, value in nominal.items():
            check(name in names, "nominal", f"keys among {names}", name)
            check(name not in given, f"nominal[{name!r}]", f"omitted: the query gives {name!r} itself", value)
            v = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
            check(v.numel() in (1, n_b) and bool(torch.isfinite(v).all()), f"nominal[{name!r}]",
                  f"a finite float or {n_b} of them (one per episode)", value)
            out[PRIOR_PREFIX + name] = v.expand(n_b).to(self.device)
        return out

    def read_query(self, query: Mapping[str, Any], xs: dict[str, tuple[int, str]]) -> tuple[dict, bool, bool]:
        """The query's arrays (exactly the keys ``xs``, {key: (rank, kind)}) as tensors [B, ...].

        Returns:
            (tensors, single episode?, inputs were numpy?).
        """
        check(set(query) == set(xs), "query", f"exactly the keys {sorted(xs)}", sorted(query))
        as_numpy = not torch.is_tensor(next(iter(query.values())))
        first = next(iter(xs))
        q0 = _as_tensor(query[first], f"query[{first!r}]", xs[first][1])
        check(q0.dim() in (xs[first][0], xs[first][0] + 1), f"query[{first!r}]",
              f"{xs[first][0]} (one episode) or {xs[first][0] + 1} (batch) dims", tuple(q0.shape))
        single = q0.dim() == xs[first][0]
        q = {k: self._load(query[k], f"query[{k!r}]", spec, single, 0) for k, spec in xs.items()}
        n_b = q[first].shape[0]
        for key, v in q.items():
            check(v.shape[0] == n_b, key, f"batch size {n_b} (as query[{first!r}])", tuple(v.shape))
        return q, single, as_numpy

    def _load(self, x: Any, field: str, spec: tuple[int, str], single: bool, lead: int) -> torch.Tensor:
        """Tensor with a batch dim [B, (k,) ...]; checks the number of dims."""
        t = _as_tensor(x, field, spec[1])
        want = spec[0] + lead + (0 if single else 1)
        what = "[k, ...]" if lead else "[...]"
        check(t.dim() == want, field, f"{want} dims ({what}{'' if single else ' with a leading batch dim'})",
              tuple(t.shape))
        return t[None] if single else t

    def _count_demos(self, demos: Mapping[str, Any], single: bool) -> int:
        """k, the number of demonstrations (all demo arrays must agree)."""
        if not demos:
            return 0
        axis = 0 if single else 1
        shapes = {key: tuple(v.shape) if hasattr(v, "shape") else np.shape(v) for key, v in demos.items()}
        ks = {key: int(s[axis]) if len(s) > axis else -1 for key, s in shapes.items()}
        k = next(iter(ks.values()))
        check(all(v == k for v in ks.values()), "demos", "the same number k of demonstrations in every array", ks)
        check(0 <= k <= self.cfg.k_max, "demos", f"k <= k_max = {self.cfg.k_max} demonstrations", k)
        return k

    def _query_labels(self, task: str, q: dict, d: dict, n_b: int) -> dict[str, torch.Tensor]:
        """Zero placeholders for the query's labels [B, ...] (shapes from the demos or from the inputs)."""
        ys = SPECS[task][1]
        if d:
            return {key: torch.zeros_like(d[key][:, 0]) for key in ys}
        check(task != "det" or "h" in q, "demos", "at least one demonstration for det without h (the number of "
              "users is read from the demos' x)", "k = 0")
        shape = {"pre_sr": lambda: q["h"].shape[1:2] + (2,), "pre_mm": lambda: q["h"].shape[1:2] + (2,),
                 "det": lambda: (q["y"].shape[1], q["h"].shape[2]),
                 "ce": lambda: (q["h_ls"].shape[1], q["h_ls"].shape[2] * self.cfg.pilot_spacing, q["h_ls"].shape[3]),
                 "cp": lambda: (CP_T_OUT,) + tuple(q["h_hist"].shape[2:]), "pf": lambda: tuple(q["h_ul"].shape[1:])}
        key, (_, kind) = next(iter(ys.items()))
        size = tuple(shape[task]()) if task in shape else ()
        return {key: torch.zeros((n_b,) + size, dtype=KIND_DTYPE[kind])}


def given_inputs(task: str, demos: Mapping[str, Any], query: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    """The task's inputs {key: (rank, kind)} this episode gives: all X_KEYS but those of ``TaskSpec.latent_x`` the
    query omits (the latent form). ValueError naming the key when a hidden input is given in some pairs only."""
    hidden = [key for key in tasks.spec(task).latent_x if key not in query]
    for key in tasks.spec(task).latent_x:
        if demos and (key in demos) != (key not in hidden):
            where, other = ("demos", "query") if key in demos else ("query", "demos")
            check(False, f"{where}[{key!r}]", f"no {key!r} (absent from the {other}; an input the latent form hides "
                  "must be omitted from the query and from every demonstration, or given in all of them)", "an array")
    return {key: v for key, v in SPECS[task][0].items() if key not in hidden}


def natural_outputs(task: str, pred: dict, q: dict) -> dict[str, torch.Tensor]:
    """Post-process the query's predictions [B, ...] into the natural outputs (see ``FewShotModel.predict``).

    Args:
        pred: the model's label outputs at the query (pre_* in the latent form also ``snr_db``, the SNR it designs
            the precoder at); q: the query's given inputs.
    """
    if task in ("pre_sr", "pre_mm"):
        from icwm.wireless.precoding import precoder_from_structure
        snr_db = q["snr_db"] if "snr_db" in q else pred["snr_db"]
        p = torch.pow(10.0, snr_db.float() / 10.0)
        return {"lam_p": pred["lam_p"], "W": precoder_from_structure(q["h"], pred["lam_p"], p).to(torch.complex64)}
    if task == "det":
        from icwm.wireless.detection import qam16
        const = qam16().to(pred["x"].device, torch.complex64)
        idx = (pred["x"][..., None] - const).abs().argmin(-1)
        return {"x": pred["x"], "x_idx": idx}
    if task == "bf":
        return {"beam": pred["beam"], "beam_scores": torch.softmax(pred["beam_logits"], -1)}
    return dict(pred)


def load_weights(root: Path, how: str) -> dict[str, torch.Tensor]:
    """State dict from ``model.safetensors`` (or a weights-only ``model.pt``).

    Raises:
        FileNotFoundError: neither file exists (``how`` says how to make one).
        ValueError: ``model: cannot read the weights: <why> (<file>)`` for a truncated or corrupt file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    for name, load in ((WEIGHTS, lambda f: load_file(str(f))),
                       ("model.pt", lambda f: torch.load(f, map_location="cpu", weights_only=True))):
        if (root / name).is_file():
            try:
                return load(root / name)
            except (SafetensorError, RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
                why = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise ValueError(f"model: cannot read the weights: {why} ({root / name})") from err
    raise FileNotFoundError(f"model: no {WEIGHTS} in {str(root)!r}; {how}")


def save_pretrained(model: torch.nn.Module, cfg: ModelConfig, path: str | Path,
                    metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model.safetensors`` + ``config.yaml`` + ``metadata.json`` to ``path`` atomically.

    Files go to a temporary sibling directory that is renamed onto ``path`` (an existing directory is replaced only
    once the new one is complete), so a crash never leaves a half-written model.

    Args:
        model: the ``ICWM`` (any device / dtype; weights are stored as they are).
        cfg: its configuration.  path: target directory.  metadata: extra JSON-serialisable facts (step, losses).
    Returns:
        The directory path.
    """
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(to_yaml(cfg))
        meta = {"parameters": count_parameters(model), "torch": torch.__version__, **dict(metadata or {})}
        (tmp / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
