"""Multi-task instruction prompts (Zheng & Dai): "[Task identifier] Task description <Instruction>".

The prompt is tokenised with the backbone's own tokenizer, embedded with its own (frozen) embedding table and
prepended to the task tokens; the outputs at the prompt positions are discarded.
"""
from __future__ import annotations

import torch

from icwm.config import check

DESCRIPTIONS = {
    "pre_sr": ("Multi-user MISO downlink precoding.", "Output the optimal-structure power and dual weights of each "
               "user that maximise the sum rate."),
    "pre_mm": ("Multi-user MISO downlink precoding.", "Output the optimal-structure power and dual weights of each "
               "user that maximise the minimum SINR."),
    "det": ("Uplink MIMO signal detection with 16-QAM.", "Recover the transmitted symbols of every user in each "
            "received slot."),
    "ce": ("OFDM channel estimation from comb pilots.", "Output the channel on every subcarrier."),
    "cp": ("Channel prediction in time.", "Predict the next channel snapshots from the past ones."),
    "pf": ("Uplink to downlink frequency prediction.", "Predict the downlink band channel from the uplink band."),
    "bf": ("Sub-6 GHz aided mmWave beam management.", "Output the best beam of the mmWave codebook."),
    "de": ("Distance estimation from the sub-6 GHz channel.", "Output the distance to the base station."),
    "pe": ("Path-loss estimation from the sub-6 GHz channel.", "Output the path loss in dB."),
}


def instruction(task: str) -> str:
    """Prompt text of ``task``: ``"[TASK] description instruction"``."""
    check(task in DESCRIPTIONS, "task", f"one of {tuple(DESCRIPTIONS)}", task)
    description, text = DESCRIPTIONS[task]
    return f"[{task.upper()}] {description} {text}"


def prompt_ids(tokenize, task: str) -> torch.Tensor:
    """Token ids of the prompt of ``task``: [prompt] int64 (``tokenize``: text -> list of ids)."""
    ids = tokenize(instruction(task))
    check(len(ids) > 0, "prompt", "a non-empty token sequence", ids)
    return torch.tensor(ids, dtype=torch.long)
