"""Sub6Head demo_fit: de / pe add the ridge regression of the earlier pairs' residuals (closed form), recover a cell's
path-loss law from demonstrations; bf scales the sub-6 angle prior by a learned confidence and adds the earlier
pairs' beam votes."""
import math

import torch

from icwm.model import ModelConfig
from icwm.model.heads import Sub6Head
from icwm.model.tokenizer import SUB6_Y, sub6_from_z, sub6_to_z


def _head(task: str, seed: int = 0) -> tuple[Sub6Head, ModelConfig]:
    torch.manual_seed(seed)
    cfg = ModelConfig.flavour("debug")
    return Sub6Head(cfg, task), cfg


def _ctx(b: int, p: int, label: torch.Tensor, g: torch.Generator, n_beams: int = 0) -> dict:
    ctx = {"power": torch.randn(b, p, generator=g), "label": label}
    if n_beams:
        ctx["prior"] = torch.randn(b, p, n_beams, generator=g)
    return ctx


def test_de_pe_fit_matches_the_closed_form_ridge():
    """Pair q: z0 + f_q^T (sum_j<q f_j f_j^T + n0 I)^-1 sum_j<q f_j (z_j - z0_j), f = [1, power, tanh(W h)]."""
    g = torch.Generator().manual_seed(1)
    for task in ("de", "pe"):
        head, cfg = _head(task)
        b, p = 2, 6
        hx = torch.randn(b, p, 3, cfg.d_model, generator=g)
        z = torch.randn(b, p, generator=g)
        ctx = _ctx(b, p, z, g)
        with torch.no_grad():
            head.n0_slope.fill_(0.5)
            out = sub6_to_z(task, head(hx, ctx)[SUB6_Y[task]])
            h = hx.mean(-2)
            z0 = head.out(h)[..., 0].double()
            f = torch.cat((torch.ones(b, p, 1), ctx["power"][..., None], torch.tanh(head.feat(h))), -1).double()
        n0 = lambda q: math.exp(float(head.log_n0) + 0.5 / max(q, 1))  # noqa: E731  ridge of pair q
        ref = torch.zeros(b, p, dtype=torch.float64)
        for i in range(b):
            for q in range(p):
                a = n0(q) * torch.eye(f.shape[-1], dtype=torch.float64)
                c = torch.zeros(f.shape[-1], dtype=torch.float64)
                for j in range(q):
                    a += torch.outer(f[i, j], f[i, j])
                    c += f[i, j] * (z[i, j] - z0[i, j])
                ref[i, q] = z0[i, q] + f[i, q] @ torch.linalg.solve(a, c)
        torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


def test_de_fit_learns_the_cell_law_from_demonstrations():
    """Labels from an exact law of the received power, unknown to the head (its own estimate: 100 m everywhere):
    many earlier pairs pin the law down."""
    g = torch.Generator().manual_seed(2)
    head, cfg = _head("de")
    with torch.no_grad():
        head.log_n0.fill_(-6.0)
        head.out[-1].weight.zero_()
        head.out[-1].bias.zero_()
    b, p = 4, 16
    hx = torch.randn(b, p, 3, cfg.d_model, generator=g)
    ctx = _ctx(b, p, torch.zeros(b, p), g)
    ctx["label"] = 0.7 - 1.3 * ctx["power"]                                   # log(d / 100) = a + b power
    with torch.no_grad():
        dist = head(hx, ctx)["distance_m"]
    err = (sub6_to_z("de", dist) - ctx["label"]).abs()
    assert err[:, -1].max() < 1e-2 * err[:, 0].mean(), (err[:, 0].mean(), err[:, -1].max())


def test_de_pe_fit_is_block_causal_and_absent_without_demos():
    g = torch.Generator().manual_seed(3)
    for task in ("de", "pe"):
        head, cfg = _head(task)
        key = SUB6_Y[task]
        b, p, q = 1, 5, 2
        hx = torch.randn(b, p, 3, cfg.d_model, generator=g)
        ctx = _ctx(b, p, torch.randn(b, p, generator=g), g)
        out = head(hx, ctx)[key]
        ctx2 = {k: v.clone() for k, v in ctx.items()}
        ctx2["label"][:, q:] += 1.0
        ctx2["power"][:, q + 1:] -= 2.0
        out2 = head(hx, ctx2)[key]
        torch.testing.assert_close(out2[:, : q + 1], out[:, : q + 1])
        assert not torch.allclose(out2[:, q + 1], out[:, q + 1])
        single = head(hx[:, :1], {k: v[:, :1] for k, v in ctx.items()})[key]     # k = 0: the trunk's estimate
        torch.testing.assert_close(single[:, 0], sub6_from_z(task, head.out(hx[:, 0].mean(-2))[..., 0]))


def test_bf_prior_and_votes():
    """k = 0: logits = exp(confidence) w_prior prior, so the decision is the prior's peak whatever the confidence;
    demonstrations that all chose one beam pull the query to it."""
    g = torch.Generator().manual_seed(4)
    head, cfg = _head("bf")
    b, p, n_beams = 2, 8, cfg.n_beams
    hx = torch.randn(b, p, 3, cfg.d_model, generator=g)
    ctx = _ctx(b, p, torch.full((b, p), 37, dtype=torch.long), g, n_beams)
    with torch.no_grad():
        alone = head(hx[:, :1], {k: v[:, :1] for k, v in ctx.items()})["beam_logits"][:, 0]
        torch.testing.assert_close(alone, head.prior_w * ctx["prior"][:, 0])      # untrained: the angle map
        head.out[-1].weight.normal_(generator=g)
        out = head(hx[:, :1], {k: v[:, :1] for k, v in ctx.items()})
        conf = torch.exp(head.out(hx[:, 0].mean(-2)).clamp(-5.0, 5.0))
        assert not torch.allclose(conf, torch.ones_like(conf))
        torch.testing.assert_close(out["beam_logits"][:, 0], conf * head.prior_w * ctx["prior"][:, 0])
        assert torch.equal(out["beam"][:, 0], ctx["prior"][:, 0].argmax(-1))
        head.vote_w.fill_(1e3)
        beam = head(hx, ctx)["beam"]
    assert (beam[:, 1:] == 37).all() and not (beam[:, 0] == 37).all()
