"""Configuration of the native in-context wireless model (ICWM) and its size flavours.

``ModelConfig`` is a plain dataclass, loadable with ``icwm.config.load_config`` (unknown keys are errors) and stored
as ``config.yaml`` beside every checkpoint. Derived values (``head_dim``, ``ffn_hidden``) are computed once in
``__post_init__``; they are plain attributes, not fields, so they never appear in (or are read from) YAML.

Every constant the model uses is a field here (with the reason for its default) or a trained parameter; the
``icr_*`` fields are only the starting points of trained parameters.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from icwm.config import check
from icwm.tasks import TASKS

# Size flavours: overrides of the defaults below. debug ~0.1 M params (tests), small a few M (CPU, shipped),
# base / large for GPUs.
FLAVOURS: dict[str, dict] = {
    "debug": dict(d_model=32, n_layers=2, n_heads=2, ffn_mult=2.0, k_max=16),
    "small": dict(d_model=160, n_layers=6, n_heads=5, ffn_mult=3.0, k_max=16),
    "base": dict(d_model=512, n_layers=12, n_heads=8, ffn_mult=4.0, k_max=32),
    "large": dict(d_model=1024, n_layers=24, n_heads=16, ffn_mult=4.0, k_max=32),
}


@dataclass
class ModelConfig:
    """Hyper-parameters of ``ICWM``.

    Tokeniser limits (``max_*``) bound the sizes a model accepts; anything up to them works without retraining,
    including values never seen in training, because the embedders are set-based (users, antennas) or padded to a
    fixed length (slots, time steps).
    """

    name: str = "custom"            # flavour name, for logs
    d_model: int = 64               # token width
    n_layers: int = 2               # transformer blocks
    n_heads: int = 4                # attention heads (d_model % n_heads == 0)
    ffn_mult: float = 4.0           # SwiGLU hidden width = ffn_mult * d_model (rounded up to a multiple of 8)
    dropout: float = 0.0            # residual / attention dropout
    rope_base: float = 10000.0      # RoPE frequency base (positions are pair indices)
    k_max: int = 16                 # most demonstrations per episode (k + 1 pairs in total)
    max_users: int = 64             # K limit (pre_*, det)
    max_ant: int = 1024             # Nt / Nr limit
    max_sc: int = 4096              # subcarrier limit (ce, cp, pf, bf, de, pe)
    max_slots: int = 16             # det: received slots per sample (padded to this length)
    max_time: int = 16              # ce / cp / pf: time steps per sample (padded to this length)
    sc_group: int = 4               # cp / pf: subcarriers per token
    pilot_spacing: int = 4          # ce: comb pilot spacing (subcarriers per token on the label side)
    sub6_group: int = 8             # bf / de / pe: sub-6 subcarriers per token
    n_ang_bins: int = 16            # bf / de / pe: fixed angular bins of the antenna-axis projection
    n_beams: int = 256              # bf: mmWave codebook size
    filter_half_width: int = 2      # ce: pilots each side of a group's pilot in its token-generated filter (the
                                    # filter's coefficients are per token, so its width costs parameters)
    bf_label: str = "angle"         # bf label token: "angle" (beam and sub-6 azimuth features) | "index" (a learned
                                    # embedding per beam, v10: the probe could not relate a beam to its angle)
    bf_angle_harmonics: int = 3     # bf "angle" label: sin / cos harmonics of each azimuth besides the angle itself
    bf_offset_bins: int = 0         # bf "angle" label: also a bank of this many Gaussian bumps of the pair's implied
                                    # panel offset (sub-6 azimuth - beam azimuth, degrees, nominal frame); a mean of
                                    # banks over the demos is a kernel density the probe can read a robust mode off
    bf_offset_span_deg: float = 30.0  # the bank's centres span +- this (the seen ranges' widest half-width, 20 deg,
                                    # plus room for outlier pairs); width = centre spacing. small.yaml: 31 (alone
                                    # no gain on the unseen offsets: docs/results/bf_offset_memo_s29)
    bf_probe_bins: int = 0          # bf: 0 = the probe regresses the panel offset; n >= 2 = it outputs logits over n
                                    # offsets evenly over +- bf_offset_span_deg from the nominal, its estimate their
                                    # softmax-weighted mean. small.yaml: 31, the bank's bins (with the bank alone it
                                    # read the unseen offsets no better: docs/results/bf_offset_memo_s29)
    bf_density_kernel: int = 0      # bf, with bf_probe_bins: 0 = off; odd n = the probe's logits also add a learned
                                    # n-tap kernel (starts as the identity, gain trained in log scale) over the log
                                    # kernel density of the earlier pairs' implied offsets on the same bins: a read-out
                                    # local in the offset, so far (outlier) density cannot pull it (bf-only A/B: unseen
                                    # eta(16) +0.3, two seeds; docs/results/bf_offset_memo_s29). small.yaml: 5
    bf_density_form: str = "mean"   # what that kernel reads per bin: "mean" = log(mean of the earlier pairs' banks +
                                    # 1e-3), as wide at k = 16 as at k = 1 (v23); "loglik" = the sum over the earlier
                                    # pairs of log(bank + 1e-3), a robust (Gaussian-plus-floor) log-likelihood that
                                    # sharpens with k, so more pairs outweigh the read-out's prior from the training
                                    # offsets (docs/results/bf_offset_memo_s29, session 33). small.yaml: loglik
    grid_fit_drop: float = 0.0      # ce / cp / pf, training only: the share of episodes whose head runs without its
                                    # in-context fit (the prediction before it is what k = 0 gets; trained only
                                    # through the fit, it hurt cp's k = 0 below its own AR first guess). Off in every
                                    # flavour: in the full recipe it lifted cp's k = 0 little and cost k = 16
                                    # (docs/results/v22_candidate)
    grid_gate_table: bool = False   # ce / cp / pf: the head's learned parts (correction and token-generated filter)
                                    # are scaled by a trained factor per number of earlier pairs j (a table starting
                                    # at 1), so the prediction at j = 0, where no in-context fit follows to repair
                                    # them, can keep less of them than those the fit corrects. Off: in the full
                                    # recipe cp's k = 0 stayed below blind (docs/results/v27_candidate)
    grid_k0_first_guess: tuple[str, ...] = ()  # ce / cp / pf named here: at inference a pair with no earlier pairs
                                    # (k = 0) gets the head's first guess alone (for cp the blind AR predictor);
                                    # training still scores the learned parts there. Chosen on a validation family no
                                    # evaluation reads (configs/systems/link_latent_val.yaml, docs/model.md)
    probe_k0_nominal: tuple[str, ...] = ()  # pre_* / bf / de / pe named here, with ``nominal``: at inference a pair
                                    # with no earlier pairs (k = 0) states its hidden scalar latents' nominal values
                                    # instead of the probe's read. Where a latent is drawn independently of the
                                    # query's inputs (pre_*: the SNR of the channel; not de / pe, whose received power
                                    # carries the offset), with no demonstration its posterior is the stated range;
                                    # the probe's k = 0 SNR read was off its centre by -1.6 .. +0.8 dB per system and
                                    # cost pre_sr 2.5 SE below blind (docs/results/pre_sr_k0_s41). Training unaffected
    probe_k0_unapplied_zero: tuple[str, ...] = ()  # bf / de / pe named here: at inference a pair with no earlier
                                    # pairs reads 0 for an offset whose nominal the batch does not state (the given
                                    # form, which applies none: no ``prior_<name>``) instead of the probe's read. pe's
                                    # head adds that read to its path loss; at k = 0 it cost the given form 0.23-0.48
                                    # dB MAE on two draws of episodes (docs/results/given_offset_s42). Training
                                    # unaffected
    offset_stated_only: tuple[str, ...] = ()  # bf / pe named here: the head applies the probe's offset (bf's panel
                                    # rotation, pe's power offset) only where the batch states its nominal (the latent
                                    # form); the given form applies none, so there the head applies 0, in training and
                                    # at inference (a latent-form query without its nominal is read as the given form).
                                    # The read cost bf's given form 0.08-0.15 of gain ratio at k = 1 / 4 in a bf-only
                                    # A/B, the option none of its latent form (docs/results/offset_stated_s43)
    icr_form_table: tuple[str, ...] = ()  # de / pe named here, with ``icr``: their in-context fit's log-ridge gets a
                                    # second trained per-j offset table (from 0) for batches that state no nominal
                                    # (the given form): there one pair's residual is its own shadowing, in the latent
                                    # form it reveals the cell's offset, and one ridge per j serves both. Off
    bf_offset_grad: bool = False    # bf: let the beam cross-entropy train the probe's offset through the rotated
                                    # prior (its gradient is ~6x the probe loss's and correlates 0.1 with the error)
    precoding_snr_grad: bool = True  # pre_*: let the task loss train the probe's SNR through the render of the
                                    # read-out at it (evaluation refines at that SNR, so only its error matters there)
    bf_prior_floor: float = -20.0   # bf: floor of the sub-6 prior's log-scores (beams 20 nepers below the peak are
                                    # all unlikely; keeps the prior's logits finite)
    label_reads_x: bool = False     # pre_* / det: a user's label token adds that user's x-token embedding, so the
                                    # trunk can tell which user a label belongs to (v11: labels were an unordered set)
    precoding_refine: bool = True   # pre_*: at inference (eval mode) the read-out's (lambda, p) is taken to the label's
                                    # own solver at the head's SNR (pre_sr WMMSE from it, pre_mm the max-min optimum);
                                    # training is unaffected (False: the read-out alone, as in v12's evaluation)
    nominal: bool = False           # latent form (pre_* SNR; bf panel, de / pe power offset): the episode's stated nominal
                                    # value of the hidden latent (prior_<name>, the range centre the blind baseline
                                    # designs at) is an input (an embedding on the x-tokens) and the probe reads the
                                    # latent as an offset from it; pe then adds the probe's power offset to its
                                    # read-out (v12: False; the model never saw a nominal)
    nominal_frame: bool = False     # with ``nominal``: bf / de / pe read their inputs in the frame of the stated nominal
                                    # offset (bf's beam azimuths rotated by it, de / pe's received power less it) and
                                    # embed only that one is stated, so a cell whose offsets lie outside the training
                                    # ranges looks like a trained one up to its offset from the nominal (v14: False)
    icr: bool = True                # the in-context ridge regressions (icr.py); False: the trunk alone reads demos
    precoding_fit: bool = False     # pre_*, with ``icr``: the in-context ridge of each user's log label on its
                                    # channel's log gain and log orthogonality to the other users; the fitted map and
                                    # each user's fitted label are token inputs (v15: False; the trunk alone read labels)
    icr_half_width: int = 12        # ce icr: pilots each side among the fit's regressors; chosen on training
                                    # episodes (python -m icwm.train.select_icr, docs/model.md)
    icr_band_half_width: int = 1    # pf icr: delay bins each side among a bin's regressors (UL-DL delay leakage);
                                    # chosen on training episodes like icr_half_width
    det_fit: str = "equaliser"      # det, latent form: the in-context fit behind the first guess: "equaliser" (symbols
                                    # on received samples, v12) or "channel" (received samples on symbols, i.e. the
                                    # channel, then EP at it with the fit's residual noise, as the given form's EP)
    det_fit_grad: bool = False      # det_fit "channel": the fit's ridge gets the loss's gradient through the (biased)
                                    # LMMSE detector at the fitted channel and noise (EP, the first guess, runs without
                                    # gradient: EP's value, LMMSE's slope). False: the ridge trains only through the
                                    # matched-filter features, and its one-pair value drifts between runs (v24-v29)
    cp_first_guess: str = "last"    # cp: the head's first guess, "last" (repeat the last sample, to v16) or "ar" (the
                                    # history's own AR prediction, ``prediction.ar_predict``: the task's blind
                                    # baseline, which follows a link's Doppler where repeat-last cannot)
    probe_hidden: int = 0           # latent probe: 0 = linear read-out of the pooled x-tokens (to v17); n > 0 = an MLP
                                    # with n GELU units (an SNR is a nonlinear function of what the demos show)
    probe_skip: bool = False        # latent probe: also read the pooled x-tokens as embedded, before the trunk (where
                                    # the embedders put their in-context fits' summaries, e.g. precoding's map)
    probe_fit: str = "none"         # latent probe and the family's in-context fit where it has one (precoding: the
                                    # fitted 2 x 3 map and its count features) as raw numbers: "none" (the trunk's
                                    # tokens only), "input" (appended to the probe's input), "branch" (a second
                                    # read-out of the map and the stated nominal, inputs standardised by running
                                    # training statistics, added to the probe's; docs/results/probe_memo_s25)
    probe_levels: bool = False      # with probe_fit, precoding: the probe's raw inputs also carry the users' mean log
                                    # gain and mean log orthogonality, which the fit's centred regressors remove, and
                                    # K / Nt: the map reads the SNR differently in a crowded system (probe_memo_s28)
    icr_features: int = 6           # de / pe icr: learned regressors besides the intercept and the received power
    icr_n0: float = 1.0             # initial ridge, in samples at the regressors' own power (one pseudo-sample)
    icr_pool: float = 0.1           # initial weight of the statistics pooled over fitting units (weak sharing)
    icr_ridge_table: bool = False   # each number of earlier pairs j also gets its own trained log-ridge offset
                                    # (starts at 0): the schedule n0 exp(slope / j) ties j = 1 to j = 2..4, and v21's
                                    # cp fit from one demo is under-regularised. It needs optim.icr_lr_mult to move,
                                    # and then alone cost cp at k = 16 (docs/results/icr_k1_s31). small.yaml: true
    icr_pool_table: bool = False    # each j also gets its own trained offset of the log pooling weight (starts at 0):
                                    # one weight for all j made the fits from many demos share as much as those from
                                    # one or two. With icr_ridge_table and icr_lr_mult 10 it kept cp's k = 1 gain
                                    # without the k = 16 loss (cp-only, icr_k1_s31; full recipe: docs/results/
                                    # v24_candidate, k = 1 up on det, ce, cp, pre_mm). small.yaml: true
    icr_residual_ridge: tuple[str, ...] = ()  # ce / cp / pf named here: each episode's ridge is also scaled by
                                    # rho^w_j, rho the episode's relative residual of its first fit to the earlier
                                    # pairs and w_j a trained per-j exponent (starts at 0): a link that fits well (high
                                    # SNR) gets a weaker ridge (pf's least squares: docs/results/pf_reference_s39)
    icr_residual_floor: float = 1e-4  # with icr_residual_ridge: rho's floor (-40 dB), a numerical guard: a fit to
                                    # fewer samples than regressors has no residual (its w_j then trains near 0)
    tasks: tuple[str, ...] = field(default_factory=lambda: TASKS)

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        self.icr_residual_ridge = tuple(self.icr_residual_ridge)
        check(self.d_model >= 8 and self.d_model % max(self.n_heads, 1) == 0, "model.d_model",
              "an integer >= 8 divisible by n_heads", (self.d_model, self.n_heads))
        check(self.n_heads >= 1 and (self.d_model // self.n_heads) % 2 == 0, "model.n_heads",
              "a head count giving an even head_dim (RoPE)", self.n_heads)
        check(self.n_layers >= 1, "model.n_layers", "an integer >= 1", self.n_layers)
        check(self.ffn_mult > 0, "model.ffn_mult", "a positive float", self.ffn_mult)
        check(0.0 <= self.dropout < 1.0, "model.dropout", "a float in [0, 1)", self.dropout)
        check(self.bf_label in ("angle", "index"), "model.bf_label", "'angle' or 'index'", self.bf_label)
        check(self.det_fit in ("equaliser", "channel"), "model.det_fit", "'equaliser' or 'channel'", self.det_fit)
        check(self.det_fit == "channel" or not self.det_fit_grad, "model.det_fit_grad",
              "false unless model.det_fit is 'channel'", self.det_fit_grad)
        check(self.cp_first_guess in ("last", "ar"), "model.cp_first_guess", "'last' or 'ar'", self.cp_first_guess)
        check(self.probe_fit in ("none", "input", "branch"), "model.probe_fit", "'none', 'input' or 'branch'",
              self.probe_fit)
        check(self.probe_fit != "none" or not self.probe_levels, "model.probe_levels",
              "false unless model.probe_fit is 'input' or 'branch'", self.probe_levels)
        check(self.bf_offset_bins == 0 or (self.bf_offset_bins >= 2 and self.bf_label == "angle"),
              "model.bf_offset_bins", "0, or an integer >= 2 with model.bf_label 'angle'", self.bf_offset_bins)
        check(self.bf_probe_bins == 0 or self.bf_probe_bins >= 2, "model.bf_probe_bins", "0, or an integer >= 2",
              self.bf_probe_bins)
        check(self.bf_density_kernel == 0 or (self.bf_density_kernel > 0 and self.bf_density_kernel % 2 == 1
                                              and self.bf_probe_bins >= 2 and self.bf_label == "angle"),
              "model.bf_density_kernel",
              "0, or an odd integer with model.bf_probe_bins >= 2 and model.bf_label 'angle'", self.bf_density_kernel)
        check(self.bf_density_form in ("mean", "loglik"), "model.bf_density_form", "'mean' or 'loglik'",
              self.bf_density_form)
        from icwm.model.grid import KEYS as GRID_TASKS        # here: grid.py imports this module
        check(set(self.grid_k0_first_guess) <= set(GRID_TASKS), "model.grid_k0_first_guess",
              f"a list of grid tasks {tuple(GRID_TASKS)}", self.grid_k0_first_guess)
        check(set(self.offset_stated_only) <= {"bf", "pe"}, "model.offset_stated_only",
              "a list among bf, pe (the heads that apply the probe's offset)", self.offset_stated_only)
        check(set(self.icr_form_table) <= {"de", "pe"} and (self.icr or not self.icr_form_table),
              "model.icr_form_table", "a list among de, pe (with model.icr)", self.icr_form_table)
        for name in ("offset_stated_only", "probe_k0_unapplied_zero", "icr_form_table"):  # forms told by the nominal
            check(not getattr(self, name) or self.nominal, f"model.{name}", "empty unless model.nominal",
                  getattr(self, name))
        check(set(self.icr_residual_ridge) <= set(GRID_TASKS), "model.icr_residual_ridge",
              f"a list of grid tasks {tuple(GRID_TASKS)}", self.icr_residual_ridge)
        check(0.0 < self.icr_residual_floor < 1.0, "model.icr_residual_floor", "a float in (0, 1)",
              self.icr_residual_floor)
        check(0.0 <= self.grid_fit_drop < 1.0, "model.grid_fit_drop", "a float in [0, 1)", self.grid_fit_drop)
        check(self.bf_offset_span_deg > 0, "model.bf_offset_span_deg", "a positive float", self.bf_offset_span_deg)
        check(self.nominal or not self.nominal_frame, "model.nominal_frame", "false unless model.nominal is true",
              self.nominal_frame)
        for name in ("filter_half_width", "icr_half_width", "icr_band_half_width", "probe_hidden"):
            check(getattr(self, name) >= 0, f"model.{name}", "an integer >= 0", getattr(self, name))
        for name in ("icr_n0", "icr_pool"):
            check(getattr(self, name) > 0, f"model.{name}", "a positive float", getattr(self, name))
        for name in ("k_max", "max_users", "max_ant", "max_sc", "max_slots", "max_time", "sc_group",
                     "pilot_spacing", "sub6_group", "bf_angle_harmonics", "n_ang_bins", "n_beams", "icr_features"):
            check(getattr(self, name) >= 1, f"model.{name}", "a positive integer", getattr(self, name))
        check(len(self.tasks) >= 1 and set(self.tasks) <= set(TASKS) and len(set(self.tasks)) == len(self.tasks),
              "model.tasks", f"distinct task ids out of {TASKS}", self.tasks)
        self.head_dim = self.d_model // self.n_heads
        self.ffn_hidden = 8 * -(-int(round(self.ffn_mult * self.d_model)) // 8)

    @classmethod
    def flavour(cls, name: str, **overrides) -> "ModelConfig":
        """The ``name`` flavour ("debug" | "small" | "base" | "large"), with optional field overrides."""
        check(name in FLAVOURS, "model.flavour", f"one of {tuple(FLAVOURS)}", name)
        return cls(**{"name": name, **FLAVOURS[name], **overrides})

    def replace(self, **changes) -> "ModelConfig":
        """A copy with fields changed (validation runs again)."""
        return dataclasses.replace(self, **changes)
