"""ICWM end to end: the block-causal property, user equivariance, unseen sizes, limits, a tiny overfit."""
from __future__ import annotations

import pytest
import torch

from icwm.model import ModelConfig, build_model
from icwm.tasks import TASKS, pre_mm, pre_sr
from icwm.train.objective import latent_losses
from icwm.wireless import maxmin
from icwm.wireless import precoding as pc
from icwm.wireless.beams import sub6_beam_scores
from model_batches import KEYS, latent_batch, random_batch, wake_bf_head


def _model(**kw) -> torch.nn.Module:
    return wake_bf_head(build_model(ModelConfig.flavour("debug", **kw))).eval()


def _resample(batch: dict, key: str, pos: slice, seed: int) -> None:
    """Replace ``batch[key][:, pos]`` by other random values of the same kind (in place)."""
    other = random_batch(batch["task"], B=batch[key].shape[0], k=batch["k"], seed=seed)
    if other[key].shape == batch[key].shape:
        batch[key][:, pos] = other[key][:, pos]
    else:  # a test with non-default sizes: perturb by a random rescaling instead
        batch[key][:, pos] = batch[key][:, pos] * 1.7 + 0.3


def _diff(a: dict, b: dict, pos: slice) -> float:
    """Largest absolute difference of the predictions at pairs ``pos`` (masked keys contribute exact zeros)."""
    return max((a[key][:, pos] - b[key][:, pos]).abs().max().item() for key in a)


@pytest.mark.parametrize("icr", [True, False])
@pytest.mark.parametrize("task", TASKS)
def test_pair_i_sees_only_earlier_pairs_and_its_own_x(task: str, icr: bool):
    """Both paths that read demonstrations (the trunk, the in-context ridge fits) are block causal."""
    model, i = _model(icr=icr, precoding_fit=True, cp_first_guess="ar"), 1
    base = random_batch(task, k=3)
    with torch.no_grad():
        ref = model(base)
        later = {**base, **{key: base[key].clone() for key in KEYS[task][0] + KEYS[task][1]}}
        for key in KEYS[task][0]:
            _resample(later, key, slice(i + 1, None), seed=5)
        for key in KEYS[task][1]:
            _resample(later, key, slice(i, None), seed=6)
        out_later = model(later)
        earlier = {**base, **{key: base[key].clone() for key in KEYS[task][1]}}
        for key in KEYS[task][1]:
            _resample(earlier, key, slice(0, i), seed=7)
        out_earlier = model(earlier)
    assert _diff(ref, out_later, slice(0, i + 1)) < 1e-7    # pairs <= i: untouched by later pairs and by y_i
    assert _diff(ref, out_later, slice(i + 1, None)) > 1e-8  # later pairs do change (the perturbation is real)
    assert _diff(ref, out_earlier, slice(0, 1)) < 1e-7       # pair 0 never sees y_0
    assert _diff(ref, out_earlier, slice(i, i + 1)) > 1e-8   # pair i reads the earlier labels


@pytest.mark.parametrize("task", ["pre_sr", "pre_mm"])
def test_precoding_user_permutation_equivariance_and_antenna_invariance(task: str):
    model = _model()
    b = random_batch(task, K=5, N=7, k=2)
    perm = torch.tensor([3, 0, 4, 1, 2])
    q, _ = torch.linalg.qr(torch.complex(torch.randn(7, 7), torch.randn(7, 7)))  # antenna-space unitary
    phase = torch.exp(1j * torch.rand(5) * 6.283).to(torch.complex64)              # per-user phases
    with torch.no_grad():
        ref = model(b)["lam_p"]
        pb = {**b, "h": b["h"][:, :, perm], "lam_p": b["lam_p"][:, :, perm]}
        out = model(pb)["lam_p"]
        rot = model({**b, "h": phase[:, None] * (b["h"] @ q)})["lam_p"]
    assert torch.allclose(out, ref[:, :, perm], atol=1e-5)
    assert torch.allclose(rot, ref, atol=1e-4)
    assert torch.allclose(ref.sum(-2), torch.ones(ref.shape[:2] + (2,)), atol=1e-5)  # columns sum to 1


def test_detection_user_permutation_equivariance():
    model = _model()
    b = random_batch("det", K=4, R=6, k=2)
    perm = torch.tensor([2, 3, 0, 1])
    with torch.no_grad():
        ref = model(b)["x"]
        out = model({**b, "h": b["h"][..., perm], "x": b["x"][..., perm]})["x"]
    assert torch.allclose(out, ref[..., perm], atol=1e-5)


@pytest.mark.parametrize("task,key,dim", [("pre_sr", "lam_p", -2), ("pre_mm", "lam_p", -2), ("det", "x", -1)])
@pytest.mark.parametrize("label_reads_x", [False, True])
def test_label_tokens_know_their_user_only_with_label_reads_x(task: str, key: str, dim: int, label_reads_x: bool):
    """Swapping two users' labels inside a demonstration (their channels unchanged) is invisible to the query when
    labels are an unordered set of tokens (v11) and seen when each label token carries its user's x embedding."""
    torch.manual_seed(0)
    model = _model(label_reads_x=label_reads_x, icr=False)
    b = random_batch(task, K=4, k=2)
    swapped = b[key].clone()
    swapped[:, 0] = b[key][:, 0].index_select(dim, torch.tensor([1, 0, 2, 3]))   # the first demonstration only
    with torch.no_grad():
        ref, out = model(b), model({**b, key: swapped})
    d = _diff(ref, out, slice(-1, None))
    assert (d > 3e-5) if label_reads_x else (d < 1e-5)          # float32 summation order: ~1e-6


SIZES = [("pre_sr", dict(K=10, N=96)), ("pre_mm", dict(K=2, N=256)), ("det", dict(K=10, R=16, S=11)),
         ("ce", dict(N=96, M=64)), ("cp", dict(N=5, M=30)), ("pf", dict(N=256, M=4)),
         ("bf", dict(A=16, S6=40)), ("de", dict(A=4, S6=8)), ("pe", dict(A=32, S6=64))]


@pytest.mark.parametrize("task,sizes", SIZES)
def test_unseen_sizes_give_label_shaped_finite_outputs(task: str, sizes: dict):
    b = random_batch(task, B=1, k=10, **sizes)
    with torch.no_grad():
        out = _model()(b)
    for key in KEYS[task][1]:
        assert out[key].shape == b[key].shape and out[key].dtype in (b[key].dtype, torch.float32)
        assert torch.isfinite(out[key].float() if not out[key].is_complex() else out[key].abs()).all()
    if task == "bf":
        assert out["beam_logits"].shape == (1, 11, 256) and out["beam"].dtype == torch.int64


def test_batch_validation():
    model = _model(k_max=4, max_users=8)
    with pytest.raises(ValueError, match="batch\\['task'\\]"):
        model({**random_batch("pre_sr"), "task": "foo"})
    with pytest.raises(ValueError, match="batch\\['k'\\]"):
        model(random_batch("pre_sr", k=5))
    with pytest.raises(ValueError, match="max_users"):
        model(random_batch("pre_sr", K=9, N=12))
    with pytest.raises(ValueError, match="k\\+1"):
        model({**random_batch("det", k=2), "k": 3})


def _simple_loss(task: str, pred: dict, b: dict) -> torch.Tensor:
    key = KEYS[task][1][0]
    if task == "bf":   # as in training: the probe's offset learns from its own loss (target 0, the given form)
        return (torch.nn.functional.cross_entropy(pred["beam_logits"].flatten(0, 1), b["beam"].flatten())
                + latent_losses(pred, b).mean())
    scale = {"distance_m": 100.0, "pathloss_db": 10.0}.get(key, 1.0)
    return ((pred[key] - b[key]) / scale).abs().pow(2).mean()


@pytest.mark.parametrize("task,lr,steps", [("pre_sr", 1e-3, 60), ("det", 3e-3, 30), ("cp", 3e-3, 30),
                                           ("bf", 3e-3, 30)])
def test_tiny_overfit_on_a_fixed_batch(task: str, lr: float, steps: int):
    torch.manual_seed(0)
    cfg = ModelConfig.flavour("debug")
    model = build_model(cfg).train()
    b = random_batch(task, B=4, k=3)
    if task == "bf":   # the head ranks beams by the sub-6 spectrum (argmax-preserving): labels at its peak, to sharpen
        b["beam"] = sub6_beam_scores(b["h_sub6"], cfg.n_beams).argmax(-1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = _simple_loss(task, model(b), b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("task", ["ce", "cp", "pf"])
def test_channel_grid_antenna_permutation_equivariance(task: str):
    model = _model()
    b = random_batch(task, N=5, M=8, k=2)
    x_key, y_key = KEYS[task][0][0], KEYS[task][1][0]
    # cp and pf fit their in-context maps per DFT beam of the antenna index: equivariant to cyclic shifts of the array
    perm = torch.tensor([1, 2, 3, 4, 0]) if task in ("cp", "pf") else torch.tensor([4, 2, 0, 1, 3])
    with torch.no_grad():
        ref = model(b)[y_key]
        out = model({**b, x_key: b[x_key][..., perm], y_key: b[y_key][..., perm]})[y_key]
    assert torch.allclose(out, ref[..., perm], atol=1e-5)


def test_precoding_refine_hands_the_read_out_to_the_label_solver_at_inference_only():
    """Eval mode: pre_sr's lam_p reaches the label solver's sum rate (an untrained read-out does not), pre_mm's is
    the max-min optimum, both at the given SNR or at the probe's; training mode: the read-out, with gradients."""
    torch.manual_seed(0)
    refined = _model()
    plain = _model(precoding_refine=False)
    plain.load_state_dict(refined.state_dict())
    b = random_batch("pre_sr", B=4, k=2, K=4, N=4)
    h, p = b["h"][:, -1], torch.pow(10.0, b["snr_db"][:, -1] / 10.0)
    rate = lambda out: pc.sum_rate(h, pc.precoder_from_structure(h, out["lam_p"][:, -1], p))  # noqa: E731
    with torch.no_grad():
        r_ref, r_plain = rate(refined(b)), rate(plain(b))
    r_solver = pc.sum_rate(h, pc.wmmse(h, p, iters=pre_sr.LABEL_ITERS))
    assert float(((r_ref - r_solver).abs() / r_solver).max()) < 1e-3
    assert float((r_solver - r_plain).mean()) > 0.3
    b_mm = {**b, "task": "pre_mm"}
    with torch.no_grad():
        torch.testing.assert_close(refined(b_mm)["lam_p"][:, -1], maxmin.maxmin_sinr(h, p).lam_p.float())
    lat = latent_batch("pre_sr", B=4, k=2, K=4, N=4)
    with torch.no_grad():
        out, read = refined(lat), plain(lat)
    torch.testing.assert_close(out["snr_db"], out["latent_hat_snr_db"])
    want = pre_sr.refine(lat["h"], read["lam_p"], torch.pow(10.0, out["snr_db"] / 10.0))
    torch.testing.assert_close(out["lam_p"], want)
    refined.train(), plain.train()
    a, c = refined(b), plain(b)
    torch.testing.assert_close(a["lam_p"], c["lam_p"])
    assert a["lam_p"].requires_grad
    assert pre_mm.refine(h, a["lam_p"][:, -1].detach(), p).shape == (4, 4, 2)
