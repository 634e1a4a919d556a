"""Few-shot inference from the command line.

    python launch/fewshot.py --task pre_sr --demos demos.npz --query query.npz --out out.npz [--model PATH]

``demos.npz`` holds the task's X_KEYS and Y_KEYS as arrays [k, ...] (or [B, k, ...]); omit it for k = 0.
``query.npz`` holds the X_KEYS [...] (or [B, ...]); with one set of demos [k, ...] and a batch of queries [Q, ...],
all Q queries are answered against that set, encoded once (``FewShotModel.predict_many``). Latent form: leave an
input of the task's ``LATENT_X`` (e.g. ``snr_db``) out of both files and the model infers it from the demonstrations;
``--nominal snr_db=10`` states a hidden latent's nominal value to a model trained with ``model.nominal``. ``out.npz``
receives the natural outputs and the model's ``estimated_*`` latents (see ``icwm.infer.FewShotModel.predict``). ``--model`` is a
directory written by ``save_pretrained`` (default: the shipped icwm-small). Exit status 2 on bad input
(``fewshot: <what> (<path or field>)`` on stderr).
"""
from __future__ import annotations

import argparse
import os
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

from icwm.infer import SPECS, FewShotModel


def _read(path: str | None, what: str) -> dict[str, np.ndarray]:
    """The named arrays of an .npz archive (``{}`` without a path); ValueError ``--<what>: <why> (<path>)``."""
    if path is None:
        return {}
    if not Path(path).is_file():
        raise ValueError(f"--{what}: no such file ({path})")
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError("expected an .npz archive of named arrays (np.savez), got a single .npy array")
        with f:
            return {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"--{what}: cannot read the .npz archive: {err} ({path})") from err


def _check_out(path: str) -> Path:
    """``--out`` as a Path; ValueError when it names a directory or its folder does not exist."""
    dest = Path(path)
    if dest.is_dir():
        raise ValueError(f"--out: expected a file path, got a directory ({dest})")
    if not dest.parent.is_dir():
        raise ValueError(f"--out: no such directory ({dest.parent})")
    return dest


def _write(dest: Path, out: dict[str, np.ndarray]) -> None:
    """``np.savez`` to ``dest`` via a temporary sibling renamed into place (removed again on failure)."""
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}.npz")
    try:
        np.savez(tmp, **out)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _shared_demos(task: str, demos: dict[str, np.ndarray], query: dict[str, np.ndarray]) -> bool:
    """True when ``demos`` hold one set [k, ...] and ``query`` a batch [Q, ...] (read from the first input key)."""
    key = next((k for k in SPECS.get(task, ({},))[0] if k in query and k in demos), None)
    if key is None:
        return False
    rank = SPECS[task][0][key][0]
    return np.ndim(query[key]) == rank + 1 and np.ndim(demos[key]) == rank + 1


def _nominal(items: list[str]) -> dict[str, float] | None:
    """``["name=value", ...]`` -> {name: value} (None when empty); ValueError naming ``--nominal``."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(f"--nominal: expected NAME=VALUE with a number, e.g. snr_db=10, got {item!r}")
    return out or None


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the predictions, write ``--out`` atomically; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--demos", default=None,
                    help=".npz with X_KEYS and Y_KEYS [k, ...] (omit for k = 0; LATENT_X may be left out)")
    ap.add_argument("--query", required=True, help=".npz with X_KEYS [...] or [Q, ...] (LATENT_X may be left out)")
    ap.add_argument("--out", required=True, help=".npz to write the predictions to")
    ap.add_argument("--model", default=None, help="model directory (default: shipped icwm-small)")
    ap.add_argument("--nominal", action="append", default=[], metavar="NAME=VALUE",
                    help="a hidden latent's stated nominal value, e.g. snr_db=10 (models trained with model.nominal)")
    args = ap.parse_args(argv)
    try:
        dest = _check_out(args.out)
        model = FewShotModel.from_pretrained(args.model)
        demos, query = _read(args.demos, "demos"), _read(args.query, "query")
        nominal = _nominal(args.nominal)
        if _shared_demos(args.task, demos, query):
            out = model.predict_many(args.task, query, demos=demos, nominal=nominal)
        else:
            out = model.predict(args.task, demos, query, nominal=nominal)
        _write(dest, out)
    except (ValueError, OSError) as err:
        print(f"fewshot: {err}", file=sys.stderr)
        return 2
    print(f"fewshot: wrote {', '.join(f'{k} {tuple(v.shape)}' for k, v in out.items())} to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
