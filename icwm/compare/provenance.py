"""Provenance of a comparison run: git revision and dirty flag, package versions, platform, device, command line."""
from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "sionna-no-rt", "sionna", "transformers", "peft", "deepspeed", "bitsandbytes", "numpy",
            "omegaconf", "icwm")


def _git(*args: str) -> str:
    """Output of ``git args`` in the repository root ("" when git or the repository is unavailable)."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def versions() -> dict[str, str]:
    """Installed versions of the packages that shape the results ("not installed" when absent)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(argv: list[str], device: torch.device) -> dict:
    """Everything needed to trace a results.csv back to code, environment and command."""
    rev = _git("rev-parse", "HEAD")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return {"git_rev": rev or "unknown", "git_dirty": bool(_git("status", "--porcelain")) if rev else None,
            "versions": versions(), "platform": platform.platform(), "machine": platform.machine(),
            "device": str(device), "gpu": gpu, "torch_threads": torch.get_num_threads(),
            "command": [sys.executable, *sys.argv[:1], *argv]}
