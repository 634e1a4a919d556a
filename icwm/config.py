"""Typed configuration loading: dataclass defaults < YAML file < command-line ``key=value`` overrides.

Every entry point owns one dataclass tree. Unknown keys and wrongly typed values raise ``ValueError``
naming the offending field, so a typo never silently falls back to a default. A YAML file may start from another
with ``extends: <path>`` (relative to its own folder): it then states only what differs, e.g. a larger flavour of
the same recipe.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")
EXTENDS = "extends"     # YAML key: the file this one starts from (its path relative to this file's folder)


def load_config(cls: type[T], yaml_path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build a ``cls`` instance from defaults, an optional YAML file and ``key=value`` overrides.

    Args:
        cls: a dataclass type (the config tree's root).
        yaml_path: optional YAML file whose keys must all exist in ``cls`` (after those of the files it
            ``extends``, which it overrides).
        overrides: dotted ``key=value`` strings (highest precedence), e.g. ``["train.steps=10"]``.

    Returns:
        A fully converted dataclass instance (``__post_init__`` validation has run).

    Raises:
        ValueError: unknown key, bad type, missing file, or a failed ``__post_init__`` check.
    """
    try:
        layers = [] if yaml_path is None else read_layers(Path(yaml_path))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ValueError(f"config: override {bad[0]!r} is not of the form key=value")
        steps = [(t, mapping_keys(t)) for t in layers]      # each layer with the keys whose mappings it replaces
        steps.append((OmegaConf.from_dotlist(list(overrides)), [o.split("=", 1)[0] for o in overrides]))
        merged = OmegaConf.structured(cls)
        for layer, keys in steps:
            merged = OmegaConf.merge(merged, layer)
            replace_mappings(merged, layer, keys)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or getattr(err, "key", None)
        raise ValueError(f"config: field {key!r}: {err.msg if hasattr(err, 'msg') else err}") from err


def replace_mappings(merged: Any, layer: Any, keys: Sequence[str]) -> None:
    """A mapping field given in a later layer replaces the earlier layers' mapping in ``merged`` instead of being merged
    into it key by key, as OmegaConf would; ``keys`` are the dotted keys the layer gives (the command line's override
    keys: ``data.task_weights={pre_sr: 1.0}`` replaces the mapping, ``data.task_weights.det=2.0`` sets one entry; a
    YAML file's ``mapping_keys``: a mapping written in a file is the whole mapping). Config sections (dataclasses) still
    merge field by field."""
    for key in keys:
        node = OmegaConf.select(layer, key)
        if OmegaConf.is_dict(node) and OmegaConf.get_type(OmegaConf.select(merged, key)) is dict:
            OmegaConf.update(merged, key, node, merge=False)


def mapping_keys(tree: Any, prefix: str = "") -> list[str]:
    """Dotted keys of every mapping in a YAML tree, outer before inner: ``{data: {task_weights: {det: 1}}}`` ->
    ``["data", "data.task_weights"]``."""
    out = []
    for key, node in tree.items_ex(resolve=False):
        if OmegaConf.is_dict(node):
            out += [f"{prefix}{key}", *mapping_keys(node, f"{prefix}{key}.")]
    return out


def read_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[Any]:
    """The YAML trees a config file stands for, first to last: those of the file it ``extends`` (recursively), then
    its own without the ``extends`` key.

    Raises:
        ValueError: as ``read_yaml``, or for an ``extends`` that is not a path or that leads back to a file already in
        the chain (``config: extends: ... (<path>)``).
    """
    tree = read_yaml(path)
    parent = tree.pop(EXTENDS, None)
    if parent is None:
        return [tree]
    if not isinstance(parent, str) or not parent:
        raise ValueError(f"config: {EXTENDS}: expected the path of a YAML file, got {parent!r} ({path})")
    target = (path.parent / parent).resolve()
    chain = (*seen, path.resolve())
    if target in chain:
        raise ValueError(f"config: {EXTENDS}: a cycle, {' -> '.join(str(p) for p in (*chain, target))} ({path})")
    return [*read_layers(target, chain), tree]


def read_yaml(path: Path) -> Any:
    """The OmegaConf tree of a YAML config file that must be a mapping.

    Raises:
        ValueError: ``config: <what> (<path>)`` for a missing or unreadable file, a YAML syntax error (with its line
        and column, 1-based) or a top level that is not a mapping of keys.
    """
    import yaml
    if not path.is_file():
        raise ValueError(f"config: no such file ({path})")
    try:
        tree = OmegaConf.load(path)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"config: YAML syntax error{where}: {getattr(err, 'problem', None) or err} ({path})") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"config: not a UTF-8 text file: {err.reason} at byte {err.start} ({path})") from err
    except OSError as err:
        raise ValueError(f"config: cannot read the file: {err.strerror or err} ({path})") from err
    if not OmegaConf.is_dict(tree):
        raise ValueError(f"config: expected a mapping of keys at the top level, got a {type(tree).__name__} ({path})")
    return tree


def check_device(device: str, field: str = "device") -> str:
    """``device`` unchanged when it can be used here; ``"auto"`` passes (it falls back to the CPU).

    Raises:
        ValueError: naming ``field`` for a CUDA device without a visible GPU or with an index beyond the GPU count.
    """
    import torch
    name, _, index = str(device).partition(":")
    if name != "cuda":
        return device
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    check(n > 0, field, "'cpu' or 'auto' (no GPU is visible here: torch.cuda.is_available() is False)", device)
    check(not index or (index.isdigit() and int(index) < n), field, f"'cuda' or 'cuda:N' with N < {n} (GPUs here)",
          device)
    return device


def to_yaml(cfg: Any) -> str:
    """Resolved YAML text of a dataclass config (stored beside checkpoints, shards and reports)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: Any) -> dict:
    """Plain ``dict`` of a dataclass config (JSON-serialisable)."""
    if dataclasses.is_dataclass(cfg):
        return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def split_cli(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Split ``--config PATH key=value ...`` into (path, overrides). ``--config=PATH`` also works.

    Arguments DeepSpeed's launcher adds (``--local_rank=N``) are dropped.
    """
    path, rest, it = None, [], iter(argv)
    for arg in it:
        if arg == "--config":
            path = next(it, None)
            if path is None:
                raise ValueError("--config needs a path")
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg.startswith("--local_rank"):
            if "=" not in arg:
                next(it, None)
        else:
            rest.append(arg)
    return path, rest


def load_cli(cls: type[T], argv: Sequence[str]) -> T:
    """``--config PATH key=value ...`` (as entry points receive them) -> a ``cls`` instance (see ``load_config``)."""
    path, overrides = split_cli(argv)
    return load_config(cls, path, overrides)


def entry_config(argv: Sequence[str], doc: str, prog: str, config_class: Callable[[], type[T]]) -> T | int:
    """An entry point's config from its command line, or the exit code when there is nothing to run.

    ``-h`` / ``--help`` prints ``doc`` and gives 0; a bad value prints ``prog: <the ValueError naming the field>`` to
    stderr and gives 2. ``config_class`` returns the config dataclass (a callable, so that ``--help`` imports nothing).
    """
    if any(a in ("-h", "--help") for a in argv):
        print(doc)
        return 0
    try:
        return load_cli(config_class(), argv)
    except ValueError as err:
        return report(prog, err)


def check_path(path: str | Path, field: str, kind: str = "directory") -> Path:
    """``path`` as a ``Path`` when it exists as a ``kind`` (``"directory"`` or ``"file"``).

    Raises:
        ValueError: ``<field>: no such <kind> (<path>)``.
    """
    path = Path(path)
    if not (path.is_dir() if kind == "directory" else path.is_file()):
        raise ValueError(f"{field}: no such {kind} ({path})")
    return path


def report(prog: str, err: Exception) -> int:
    """Print a bad input's error as ``prog: <what> (<path>)`` to stderr; returns the exit status 2.

    An ``OSError`` shows its reason and file name; any other error its message (which names the field or path).
    """
    if isinstance(err, OSError) and err.filename is not None:
        text = f"{err.strerror or type(err).__name__} ({err.filename})"
    else:
        text = str(err)
    print(f"{prog}: {text}", file=sys.stderr)
    return 2


def check(cond: bool, field: str, expected: str, got: Any) -> None:
    """Raise ``ValueError`` naming ``field`` when ``cond`` is false."""
    if not cond:
        raise ValueError(f"{field}: expected {expected}, got {got!r}")
