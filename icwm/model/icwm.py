"""ICWM: the native in-context wireless model (family embedders -> block-causal transformer -> family heads).

Each task family has one module (``precoding``, ``detection``, ``grid``, ``sub6``) holding its embedder, head,
typed head context and tokeniser limits; this module wires them to the trunk (``transformer.py``) and adds the
latent probe: a linear (or MLP) read-out, from every pair's x-tokens (which see the earlier pairs, never their own
label; with ``model.probe_skip`` also the same tokens before the trunk; with ``model.probe_fit`` also the family's
in-context fit as raw numbers, ``probe_in`` of its head context, where it has one: as more inputs, or through a
second read-out of the fit and the stated nominal values whose output is added), of the task's scalar latents
(``LATENT_SCALES``; with ``model.nominal``, as an offset from the latent's stated nominal value where the episode
states one). It is trained with an auxiliary loss (``icwm.train.objective``) and is how the network states what it
inferred from the demonstrations: precoding renders its ``lam_p`` at the probe's SNR in the latent form, bf reads its
prior at the probe's panel offset.
"""
from __future__ import annotations

import torch
from torch import nn

from icwm import tasks
from icwm.config import check
from icwm.model import detection, grid, precoding, sub6
from icwm.model.common import LATENT_SCALES, nominal_features, nominal_values, scalar_latents
from icwm.model.config import ModelConfig
from icwm.model.transformer import EpisodeTransformer

LATENT_HAT = "latent_hat_"     # output key prefix of the probe's estimates


def _probe(d: int, n_latent: int, hidden: int) -> nn.Module:
    """The latent probe's read-out, [..., d] (its input width) -> [..., n_latent]: linear, or an MLP with ``hidden``
    GELU units.

    The output bias starts at 0 (the mean untrained estimate is "no offset"); the weights keep their random init
    (all-zero weights are a saddle: the trunk gets no gradient to encode the latent, the probe none to read it)."""
    out = nn.Linear(hidden or d, n_latent)
    nn.init.zeros_(out.bias)
    return nn.Sequential(nn.Linear(d, hidden), nn.GELU(), out) if hidden else out


class BinnedProbe(nn.Module):
    """A read-out of logits over fixed values, [..., d] -> [..., 1]: the softmax-weighted mean of ``centres`` [bins]
    (``model.bf_probe_bins``: bf's panel offset from the nominal, in ``LATENT_SCALES`` units). Where the pooled
    tokens carry a density of the demonstrations' offsets (``model.bf_offset_bins``' banks), logits that follow it
    would put the estimate at its mode, which outlier pairs far from it move little (in bf-only A/Bs it read the unseen
    offsets no better than the regression: docs/results/bf_offset_memo_s29). Its output bias starts at 0 and its
    weights random (``_probe``), so the untrained estimates spread around the centres' mean, 0: no offset.

    With ``kernel`` taps (``model.bf_density_kernel``) the logits also add ``exp(gain) * conv(log_density)``, the
    earlier pairs' log density or log-likelihood on the same bins (``sub6.demo_log_density``): local in the offset,
    the same at every offset (the kernel-mode fit's shape, its kernel and sharpness trained). The kernel starts as the
    identity and the gain at 0 (softmax = the regression's distribution times the density); the gain is trained in
    log scale because Adam moves a parameter about lr per step and a sharp mode needs a gain of several. A constant
    log density (k = 0) adds a constant: no effect (edges padded by replication)."""

    def __init__(self, d: int, centres: torch.Tensor, hidden: int, kernel: int = 0) -> None:
        super().__init__()
        self.read = _probe(d, centres.numel(), hidden)
        self.register_buffer("centres", centres.float())
        self.kernel = nn.Parameter(torch.zeros(kernel)) if kernel else None
        self.gain = nn.Parameter(torch.zeros(1)) if kernel else None     # [1]: DeepSpeed broadcasts 1-d tensors
        if kernel:
            with torch.no_grad():
                self.kernel[kernel // 2] = 1.0

    def forward(self, x: torch.Tensor, log_density: torch.Tensor | None = None) -> torch.Tensor:
        """x [..., d] (and with a kernel the log density [..., bins]) -> the estimate [..., 1] float32."""
        logits = self.read(x).float()                                    # [..., bins]
        if self.kernel is not None:
            check(log_density is not None, "log_density", "the earlier pairs' offset density (model.bf_density_kernel)",
                  None)
            r = self.kernel.numel() // 2
            ld = log_density.float().reshape(-1, 1, log_density.shape[-1])
            ld = nn.functional.pad(ld, (r, r), mode="replicate")
            conv = nn.functional.conv1d(ld, self.kernel.float()[None, None])
            logits = logits + self.gain.float().exp() * conv.reshape(log_density.shape)
        return (torch.softmax(logits, -1) @ self.centres)[..., None]


def nominal_at_pair0(est: torch.Tensor, nominal: torch.Tensor) -> torch.Tensor:
    """``model.probe_k0_nominal``: a latent's estimates est [B, P] with pair 0's (no earlier pairs) replaced by the
    stated nominal [B, P] or [B, 1]."""
    return torch.cat((torch.broadcast_to(nominal, est.shape)[:, :1].to(est.dtype), est[:, 1:]), 1)


def _task_probe(cfg: ModelConfig, task: str, d: int) -> nn.Module:
    """The latent probe of ``task`` (input width d): ``_probe``, or for bf with ``cfg.bf_probe_bins`` a
    ``BinnedProbe`` over that many offsets evenly over +- ``cfg.bf_offset_span_deg``."""
    names = probe_latents(task)
    if task != "bf" or not cfg.bf_probe_bins:
        return _probe(d, len(names), cfg.probe_hidden)
    (name,) = names
    span = cfg.bf_offset_span_deg / LATENT_SCALES[name]
    return BinnedProbe(d, torch.linspace(-span, span, cfg.bf_probe_bins), cfg.probe_hidden, cfg.bf_density_kernel)


def _fit_probe(n_in: int, n_latent: int, hidden: int) -> nn.Module:
    """``model.probe_fit = "branch"``'s read-out of a family's raw in-context fit and the stated nominal values,
    [..., n_in] -> [..., n_latent]:
    the ``_probe`` read-out behind ``RunningStandardise``. Why: the fitted coefficients move with the latent by a few
    hundredths (precoding's map, sd 0.02-0.34 over episodes), so an unscaled read-out learns them many times slower
    under Adam's fixed step size (docs/results/probe_memo_s25). Its output weights start at zero: a random read-out
    of standardised inputs starts at SNR estimates tens of dB off, at which the precoding loss's gradient is not
    finite."""
    read = _probe(n_in, n_latent, hidden)
    out = read[-1] if hidden else read
    nn.init.zeros_(out.weight)      # starts adding nothing (its inputs are fixed features: no saddle, unlike _probe's)
    return nn.Sequential(RunningStandardise(n_in), read)


class RunningStandardise(nn.Module):
    """x [..., n] -> (x - mean) / sqrt(var + eps) per feature, with mean and var those of all training batches so far
    pooled, each batch weighted equally (buffers, updated in training mode before use): var = the average
    within-batch variance + the variance of the batch means. The second term matters: a sampler batch holds one
    system, so a feature constant within it (a stated nominal value) has zero within-batch variance (averaging the
    batches' variances alone left it at 0 and its z-scores at the clip). A batch's own statistics never normalise it
    (unlike BatchNorm), so training and evaluation apply the same transform, whatever a batch's k: BatchNorm's batch
    statistics, which move with k, broke the read-out at evaluation.
    Outputs are clipped to +-``CLIP`` sd: early statistics can be degenerate (a k = 0 batch has no fit: zero variance),
    and an unbounded input would let the read-out's first estimates overflow (an SNR in dB is exponentiated)."""

    CLIP = 10.0

    def __init__(self, n: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("var", torch.ones(n))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))   # integer: survives a cast to bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                flat = x.detach().reshape(-1, x.shape[-1]).float()
                self.count += 1                                     # no .item(): no host sync on a GPU
                b_mean, b_var = flat.mean(0).to(self.mean.dtype), flat.var(0, unbiased=False).to(self.var.dtype)
                delta = b_mean - self.mean
                self.mean.add_(delta / self.count)
                self.var.add_((b_var + delta * (b_mean - self.mean) - self.var) / self.count)   # Welford, per batch
        z = (x - self.mean.to(x.dtype)) / (self.var.to(x.dtype) + self.eps).sqrt()
        return z.clamp(-self.CLIP, self.CLIP)


def probe_latents(task: str) -> tuple[str, ...]:
    """The scalar latents of ``task`` the probe estimates (from its ``TaskSpec``; scales in ``LATENT_SCALES``)."""
    return scalar_latents(task)


def unapplied_readers(names: tuple[str, ...]) -> tuple[str, ...]:
    """The tasks among ``names`` whose probed latents are offsets no form states as an input (bf / de / pe: the
    given form applies none; ``model.probe_k0_unapplied_zero``), unlike pre_*'s SNR, an input of the given form."""
    return tuple(t for t in names if probe_latents(t) and not set(probe_latents(t)) & set(tasks.get(t).X_KEYS))


def _family(cfg: ModelConfig, task: str) -> tuple[nn.Module, nn.Module, list]:
    """(embedder, head, tokeniser limits) of ``task``: the one place task ids map to families."""
    if task in ("pre_sr", "pre_mm"):
        return precoding.PrecodingEmbed(cfg), precoding.PrecodingHead(cfg, task), precoding.LIMITS
    if task == "det":
        return detection.DetEmbed(cfg), detection.DetHead(cfg), detection.LIMITS
    if task in grid.KEYS:
        return grid.GridEmbed(cfg, task), grid.GridHead(cfg, task), grid.LIMITS[task]
    check(task in sub6.Y, "task", "a known task id", task)
    return sub6.Sub6Embed(cfg, task), sub6.Sub6Head(cfg, task), sub6.LIMITS


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class ICWM(nn.Module):
    """In-context wireless transformer: one forward pass predicts every pair of an episode.

    Args:
        cfg: model configuration (see ``ModelConfig``).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        parts = {t: _family(cfg, t) for t in cfg.tasks}
        self.embedders = nn.ModuleDict({t: parts[t][0] for t in cfg.tasks})
        self.heads = nn.ModuleDict({t: parts[t][1] for t in cfg.tasks})
        self.limits = {t: parts[t][2] for t in cfg.tasks}
        # latents whose stated nominal value the task's embedder reads (model.nominal: pre_* SNR, bf / de / pe offsets)
        self.nominal = {t: e.nominal.names for t, e in self.embedders.items() if getattr(e, "nominal", None)}
        check(set(cfg.probe_k0_nominal) <= set(self.nominal), "model.probe_k0_nominal",
              f"tasks that read a stated nominal value (with model.nominal: {sorted(self.nominal)})",
              cfg.probe_k0_nominal)
        if cfg.probe_k0_unapplied_zero:
            readers = unapplied_readers(cfg.tasks)
            check(set(cfg.probe_k0_unapplied_zero) <= set(readers), "model.probe_k0_unapplied_zero",
                  f"tasks whose probed latents no form states as inputs {readers}", cfg.probe_k0_unapplied_zero)
        n_fit = {t: getattr(e, "probe_features", 0) for t, e in self.embedders.items()}
        d_probe = {t: (2 if cfg.probe_skip else 1) * d + (n if cfg.probe_fit == "input" else 0)
                   for t, n in n_fit.items()}
        self.probes = nn.ModuleDict({t: _task_probe(cfg, t, d_probe[t]) for t in cfg.tasks if probe_latents(t)})
        # the branch also reads the stated nominal values (it estimates the offset from them, as the probe does)
        self.fit_probes = nn.ModuleDict({t: _fit_probe(n_fit[t] + 2 * len(self.nominal.get(t, ())),
                                                       len(probe_latents(t)), cfg.probe_hidden)
                                         for t in cfg.tasks if probe_latents(t) and n_fit[t]
                                         and cfg.probe_fit == "branch"})
        self.task_emb = nn.Embedding(len(cfg.tasks), d)
        self.role_emb = nn.Embedding(2, d)  # 0: x-token, 1: y-token
        self.trunk = EpisodeTransformer(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def check_batch(self, batch: dict) -> tuple[str, int]:
        """Validate the task, k and the tokeniser limits; returns (task, n_pairs)."""
        task, k = batch.get("task"), batch.get("k")
        check(task in self.cfg.tasks, "batch['task']", f"one of the model's tasks {self.cfg.tasks}", task)
        check(isinstance(k, int) and 0 <= k <= self.cfg.k_max, "batch['k']", f"an int in [0, {self.cfg.k_max}]", k)
        for key, dim, field in self.limits[task]:
            check(key in batch, f"batch[{key!r}]", f"a tensor for task {task}", None)
            x = batch[key]
            check(x.dim() >= 2 and x.shape[1] == k + 1, f"batch[{key!r}]", f"shape [B, k+1={k + 1}, ...]",
                  tuple(x.shape))
            limit = getattr(self.cfg, field)
            check(x.shape[dim] <= limit, f"batch[{key!r}]", f"dim {dim} <= model.{field} = {limit}", tuple(x.shape))
        return task, k + 1

    def role_task(self, task: str, t: torch.Tensor, role: int) -> torch.Tensor:
        """Embedded tokens [B, P, n, d] plus the role (0: x-token, 1: y-token) and task embeddings."""
        tid = torch.tensor(self.cfg.tasks.index(task), device=t.device)
        return t + self.role_emb.weight[role] + self.task_emb(tid)

    def probe(self, task: str, hx: torch.Tensor, batch: dict, x0: torch.Tensor | None = None,
              fit: torch.Tensor | None = None, log_density: torch.Tensor | None = None,
              first_is_pair0: bool = True) -> dict[str, torch.Tensor]:
        """Latent estimates {name: [B, P] float32, natural units} from the x-tokens hx [B, P, n_x, d] (and, with
        ``cfg.probe_skip``, the embedded x-tokens x0 [B, P, n_x, d] before the trunk; where the task's embedder has
        ``probe_features`` (``cfg.probe_fit``), its in-context fit ``fit`` [B, P, probe_features], the head
        context's ``probe_in``; bf with ``cfg.bf_density_kernel``, the earlier pairs' log offset density [B, P,
        bins], the head context's ``log_density``).

        With ``cfg.nominal``, where ``batch`` states the nominal value of a latent the task's embedder reads
        (``self.nominal``; ``prior_<name>`` [B, P] or [B, 1]), the read-out is the offset from it: estimate = nominal +
        read-out. With ``cfg.probe_k0_nominal``, in eval mode, the first pair of hx states the nominal instead when
        it has no earlier pairs (``first_is_pair0``; false for a query embedded alone after cached demonstrations);
        with ``cfg.probe_k0_unapplied_zero`` it reads 0 there for a latent whose nominal the batch does not state (no
        ``prior_<name>``: the given form, which applies no offset)."""
        names = probe_latents(task)
        if not names:
            return {}
        check(x0 is not None or not self.cfg.probe_skip, "x0", "the embedded x-tokens (model.probe_skip)", x0)
        pooled = torch.cat((hx.mean(2), x0.mean(2)), -1) if self.cfg.probe_skip else hx.mean(2)
        if getattr(self.embedders[task], "probe_features", 0):
            check(fit is not None, "fit", "the embedder's in-context fit (model.probe_fit)", fit)
            if self.cfg.probe_fit == "input":
                pooled = torch.cat((pooled, fit.to(pooled.dtype)), -1)
        probe = self.probes[task]
        o = (probe(pooled, log_density) if getattr(probe, "kernel", None) is not None else probe(pooled)).float()
        if task in self.fit_probes:
            feat = torch.cat((fit.float(), nominal_features(batch, self.nominal.get(task, ()), fit)), -1)
            o = o + self.fit_probes[task](feat.to(pooled.dtype)).float()
        base = {n: v.to(o.device) for n, v in nominal_values(batch, self.nominal.get(task, ())).items()}
        out = {n: LATENT_SCALES[n] * o[..., i] + base.get(n, 0.0) for i, n in enumerate(names)}
        if self.training or not first_is_pair0:
            return out
        if task in self.cfg.probe_k0_nominal:
            out = {n: nominal_at_pair0(v, base[n]) if n in base else v for n, v in out.items()}
        if task in self.cfg.probe_k0_unapplied_zero:
            out = {n: v if n in base else nominal_at_pair0(v, torch.zeros_like(v[:, :1])) for n, v in out.items()}
        return out

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Predict every pair of the episodes in ``batch``.

        Args:
            batch: ``task`` (str), ``k`` (int) and, for the task's inputs (the latent form omits ``LATENT_X``) and
                labels, tensors [B, k+1, ...] (the query is the last pair; its labels may be zeros).
        Returns:
            Natural predictions in the Y_KEYS form, [B, k+1, ...] (bf also ``beam_logits`` [B, k+1, n_beams]), and
            the probe's ``latent_hat_<name>`` [B, k+1] (precoding in the latent form also ``snr_db``).
        """
        task, n_pairs = self.check_batch(batch)
        x, y, ctx = self.embedders[task](batch)            # [S, P, n_x, d], [S, P, n_y, d]
        s, _, n_x, d = x.shape
        n_y = y.shape[2]
        x, y = self.role_task(task, x, 0), self.role_task(task, y, 1)
        tok = torch.cat((x, y), dim=2)                     # [S, P, n_x + n_y, d]
        h = self.trunk(self.drop(tok.reshape(s, n_pairs * (n_x + n_y), d)), n_pairs, n_x, n_y)
        hx = h.reshape(s, n_pairs, n_x + n_y, d)[:, :, :n_x]  # x-tokens of every pair
        latent = self.probe(task, hx, batch, x, getattr(ctx, "probe_in", None), getattr(ctx, "log_density", None))
        out = self.heads[task](hx, ctx, latent)
        return {**out, **{LATENT_HAT + n: v for n, v in latent.items()}}


def build_model(cfg: ModelConfig) -> ICWM:
    """Build a freshly initialised ``ICWM`` (on CPU, float32; move it with ``.to()`` outside)."""
    return ICWM(cfg)
