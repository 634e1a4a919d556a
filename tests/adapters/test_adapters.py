"""LoRA / MoE-LoRA / NF4 / LoftQ: merge invariance, frozen bases, gates per task, LoftQ error vs naive."""
from __future__ import annotations

import pytest
import torch

from adapters_llm import quant
from adapters_llm.backbones import build_backbone
from adapters_llm.config import AdapterConfig, BackboneConfig
from adapters_llm.lora import LoRALinear, set_merged
from adapters_llm.model import ADAPTER_KEYS, apply_method
from adapters_llm.moe_lora import MoELoRALinear, task_context

TINY = dict(n_layers=2, hidden=32, heads=4, vocab=100)


def _lora_backbone(arch: str):
    bb = build_backbone(BackboneConfig(arch=arch, **TINY)).eval()
    apply_method(bb, AdapterConfig(peft="lora", rank=4, alpha=8.0))
    return bb


def _randomise_b(model: torch.nn.Module, rng: torch.Generator) -> None:
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.copy_(torch.randn(p.shape, generator=rng) * 0.5)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_lora_merge_unmerge_and_nonzero_b(arch: str, rng: torch.Generator):
    bb = _lora_backbone(arch)
    emb = torch.randn(2, 5, 32, generator=rng)
    with torch.no_grad():
        base = bb(emb)
        _randomise_b(bb, rng)
        unmerged = bb(emb)
        assert set_merged(bb, True) == (2 if arch == "gpt2" else 4)
        set_merged(bb, True)                               # idempotent
        merged = bb(emb)
        set_merged(bb, False)
        again = bb(emb)
    assert (unmerged - base).abs().max() > 1e-3            # a non-zero B changes the output
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, unmerged, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("peft", ["lora", "moe_lora", "nf4_naive"])
def test_base_weights_unchanged_after_optimizer_step(peft: str, rng: torch.Generator):
    """apply_method leaves exactly the adapters trainable: an optimiser over every parameter (SGD skips those
    without a gradient) moves adapter weights and no base weight or buffer."""
    bb = build_backbone(BackboneConfig(arch="llama", **TINY))
    apply_method(bb, AdapterConfig(peft=peft, rank=4, alpha=8.0, n_experts=3, task_dim=8))
    params = dict(bb.named_parameters())
    adapter = {n for n in params if any(k in n for k in ADAPTER_KEYS)}
    assert adapter and len(adapter) < len(params)
    assert {n for n, p in params.items() if p.requires_grad} == adapter
    before = {n: p.detach().clone() for n, p in params.items()} | {n: b.clone() for n, b in bb.named_buffers()}
    with torch.no_grad():                                  # B = 0 at init would give A no gradient
        _randomise_b(bb, rng)
    before.update({n: params[n].detach().clone() for n in adapter})
    opt = torch.optim.SGD(bb.parameters(), lr=0.1)
    emb = torch.randn(2, 5, 32, generator=rng)
    with task_context(bb, torch.randn(2, 8, generator=rng)):
        bb(emb).square().mean().backward()
    opt.step()
    state = params | dict(bb.named_buffers())
    moved = {n for n in before if not torch.equal(state[n], before[n])}
    assert moved and moved <= adapter, sorted(moved - adapter)


def test_moe_gate_differs_per_task_and_merge_matches(rng: torch.Generator):
    base = torch.nn.Linear(12, 10)
    layer = MoELoRALinear(base, n_experts=4, rank=3, scaling=2.0, dropout=0.0, task_dim=6, generator=rng)
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=rng))
    tasks = torch.randn(2, 6, generator=rng)
    w = layer.gate_weights(tasks)
    torch.testing.assert_close(w.sum(-1), torch.ones(2))
    assert (w[0] - w[1]).abs().max() > 1e-3
    x = torch.randn(2, 5, 12, generator=rng)
    with torch.no_grad():
        out = layer(x, task_emb=tasks)                                   # per-sample task
        assert (out[0] - layer(x[:1], task_emb=tasks[1:])[0]).abs().max() > 1e-4
        layer.merge(tasks[0])
        layer.merge(tasks[0])                                            # idempotent
        merged = layer(x[:1], task_emb=tasks[:1])
        with pytest.raises(ValueError, match="task_emb"):
            layer(x[:1], task_emb=tasks[1:])
        layer.unmerge()
        layer.unmerge()
        torch.testing.assert_close(merged, out[:1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(layer(x, task_emb=tasks), out, atol=1e-6, rtol=1e-6)
    top1 = MoELoRALinear(base, 4, 3, 2.0, 0.0, 6, gate="top1", generator=rng).gate_weights(tasks)
    assert ((top1 > 0).sum(-1) == 1).all()


def test_nf4_roundtrip_and_storage(rng: torch.Generator):
    W = torch.randn(64, 128, generator=rng)
    Wq = quant.nf4_roundtrip(W)
    rel = float((W - Wq).norm() / W.norm())
    assert 0.02 < rel < 0.15                                             # 4-bit: lossy but close
    torch.testing.assert_close(quant.nf4_roundtrip(Wq), Wq)              # NF4 values are fixed points
    lin = torch.nn.Linear(128, 64)
    q = quant.NF4Linear.from_dense(lin)
    torch.testing.assert_close(q.dequantize(), quant.nf4_roundtrip(lin.weight))
    assert q.storage_bytes() / (lin.weight.numel() * 2) <= 0.30          # vs bf16
    x = torch.randn(3, 128, generator=rng, requires_grad=True)
    q(x).sum().backward()                                                # gradient through dequantise-on-the-fly
    torch.testing.assert_close(x.grad, q.dequantize().sum(0).expand(3, -1))


def test_loftq_error_decreases_and_beats_naive(rng: torch.Generator):
    W = torch.randn(96, 64, generator=rng) * 0.05
    res = quant.loftq(W, rank=8, iters=5, scaling=2.0)
    naive = float(torch.linalg.matrix_norm(W - quant.nf4_roundtrip(W)))
    assert len(res.errors) == 5 and res.errors[-1] < res.errors[0] < naive
    assert all(b <= a * 1.01 for a, b in zip(res.errors, res.errors[1:]))
    # the module reproduces W ~ Q + s B A with that error
    layer = LoRALinear(quant.NF4Linear(res.residual), 8, 2.0, A=res.A, B=res.B)
    eff = layer.base_layer.dequantize() + layer.delta_weight()
    assert abs(float(torch.linalg.matrix_norm(W - eff)) - res.errors[-1]) < 1e-4
    with pytest.raises(ValueError, match="merge"):
        layer.merge()
