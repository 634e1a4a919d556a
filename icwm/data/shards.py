"""Webdataset shards of task samples: deterministic writer, reader, ``index.json`` and integrity check.

A shard is a plain tar of records, one record per group of ONE task and ONE system configuration, so tensor
shapes are homogeneous inside a shard. Record ``000012`` holds ``000012.<key>.npy`` per tensor
(``[sample, ...]``, dtype kept, complex stays complex) and ``000012.meta.json``. Same config and seed give
byte-identical shards: fixed member order, mtime 0, uid/gid 0, mode 0444, no timestamps in the metadata.

Several ranks (``launch/make_data.py`` under torchrun) split the shards round robin (``rank_share``); each keeps
its progress in a ``.index.rank-NNNNN.json`` file, and rank 0 merges them into ``index.json`` at the end, so the
directory is byte-identical to a single-process run's.

Completeness and integrity. ``index.json`` stores the number of planned shards and ``"complete": true`` only when
every planned shard is written and listed (the last, atomic write of a finished run; rank 0's merge with several
ranks). Readers (``open_data_set``, the episode sampler) refuse a set without it, index paths that leave the data
directory, missing or resized shards (at start-up, sizes only), shards whose sha256 differs from the index (at
first open, ``check_shard_hash``) and non-finite float / complex samples (``read_shard``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import io
import json
import multiprocessing
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch
import webdataset as wds
from tqdm import tqdm

from icwm import tasks as task_registry
from icwm.config import check, to_dict
from icwm.data.config import DataConfig
from icwm.wireless.sysconfig import SystemConfig

FORMAT = "icwm-shards-v1"
INDEX_NAME = "index.json"
META_MEMBER = "meta.json"
INDEX_EVERY_S = 5.0     # index.json refresh period while writing (resume loses at most this much work)
PART_GLOB = ".index.rank-*.json"     # per-rank progress of a multi-rank run (merged into index.json, then removed)
MAX_NAMED = 10          # bad shards named one by one in an error message (the rest are counted)
ENTRY_FIELDS = {"file": str, "task": str, "system": str, "groups": int, "samples_per_group": int, "sha256": str,
                "bytes": int}           # index entry fields the readers rely on, with their types
GetTask = Callable[[str], ModuleType]
Gather = Callable[[object], list]   # all-gather of a picklable object over the ranks: one item per rank, rank order
T = TypeVar("T")


class ShardError(ValueError):
    """A shard is missing, truncated, corrupted or inconsistent with ``index.json``."""


class RankError(RuntimeError):
    """Writing failed on some rank of a multi-rank run; every rank raises it (none waits for a dead one)."""


def stable_seed(*parts: object) -> int:
    """Seed in [0, 2^63) from a stable hash (sha256) of ``parts``; independent of PYTHONHASHSEED."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the data (stored in every record's meta)."""
    out = {}
    for name, dist in (("torch", "torch"), ("numpy", "numpy"), ("sionna", "sionna-no-rt"), ("icwm", "icwm")):
        try:
            out[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not-installed"
    return out


@dataclass(frozen=True)
class ShardSpec:
    """Everything that determines one shard's bytes."""

    file: str
    split: str
    task: str
    system_index: int
    system: SystemConfig
    shard_index: int
    first_group: int            # index of the shard's first group among the (task, system) groups
    n_groups: int
    samples_per_group: int
    base_seed: int

    @property
    def seed(self) -> int:
        """Shard seed = stable hash of (base seed, split, task, system index, shard index)."""
        return stable_seed(self.base_seed, self.split, self.task, self.system_index, self.shard_index)

    def fingerprint(self) -> str:
        """sha256 of the spec (JSON), used to decide whether an existing shard can be kept."""
        d = dataclasses.asdict(self)                       # SystemConfig is a plain dataclass tree
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def plan_shards(cfg: DataConfig, systems: dict[str, list[SystemConfig]]) -> list[ShardSpec]:
    """All shards of ``cfg``, ordered by task, system, shard.

    Args:
        systems: task -> its systems (``cfg.systems_for(task)``).

    Returns:
        One ``ShardSpec`` per shard; file ``{split}-{task}-{system}-{shard:05d}.tar``.
    """
    specs = []
    for task in cfg.tasks:
        total = cfg.groups_for(task)
        for si, system in enumerate(systems[task]):
            for shard in range(cfg.shards_for(task)):
                first = shard * cfg.groups_per_shard
                specs.append(ShardSpec(
                    file=f"{cfg.split}-{task}-{system.name}-{shard:05d}.tar", split=cfg.split, task=task,
                    system_index=si, system=system, shard_index=shard, first_group=first,
                    n_groups=min(cfg.groups_per_shard, total - first), samples_per_group=cfg.samples_per_group,
                    base_seed=cfg.seed))
    return specs


def rank_share(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Round-robin share of ``rank`` among ``world_size`` ranks: items ``rank, rank + W, rank + 2W, ...``.

    Over the ranks every item appears exactly once and share sizes differ by at most one; on a plan ordered by
    task, system, shard each rank gets about 1/W of every (task, system) pair, hence of the cost.
    """
    check(world_size >= 1, "world_size", "an integer >= 1", world_size)
    check(0 <= rank < world_size, "rank", f"an integer in [0, {world_size})", rank)
    return list(items[rank::world_size])


def _npy_bytes(x: torch.Tensor, key: str) -> bytes:
    check(x.dtype != torch.bfloat16, f"tensor {key!r}", "a numpy-compatible dtype", x.dtype)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, x.detach().cpu().contiguous().numpy(), allow_pickle=False)
    return buf.getvalue()


def _check_output(out: dict[str, torch.Tensor], module: ModuleType, spec: ShardSpec) -> None:
    lead = (spec.n_groups, spec.samples_per_group)
    xk = task_registry.x_keys(module, out) if hasattr(module, "X_KEYS") else ()
    for key in tuple(xk) + tuple(getattr(module, "Y_KEYS", ())):
        check(key in out, f"{spec.task}.generate", f"output with key {key!r}", sorted(out))
    for key, x in out.items():
        check("." not in key and key not in ("meta", "__key__"), f"{spec.task}.generate key", "a name without '.', "
              "not 'meta'", key)
        check(isinstance(x, torch.Tensor) and tuple(x.shape[:2]) == lead, f"{spec.task}.generate[{key!r}]",
              f"a tensor with leading dims [group, sample] = {lead}", getattr(x, "shape", type(x)))
        bad = _non_finite(x)
        if bad:
            raise ValueError(f"{spec.task}.generate[{key!r}]: {bad} non-finite value(s) (NaN/inf) for shard "
                             f"{spec.file} (system {spec.system.name}, seed {spec.seed}); shards hold finite "
                             "samples only")


def _non_finite(x: torch.Tensor) -> int:
    """Number of NaN / inf entries of a float or complex tensor (0 for other dtypes)."""
    if not (x.is_floating_point() or x.is_complex()):
        return 0
    return int((~torch.isfinite(x)).sum())


def encode_records(out: dict[str, torch.Tensor], spec: ShardSpec, module: ModuleType) -> list[dict]:
    """Webdataset records (one per group) of a ``generate`` output: ``{"__key__", "<key>.npy", "meta.json"}``."""
    versions, system = package_versions(), dataclasses.asdict(spec.system)
    keys = {k: {"shape": list(v.shape[1:]), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in out.items()}
    records = []
    for g in range(spec.n_groups):
        meta = {"format": FORMAT, "task": spec.task, "split": spec.split, "system": system,
                "system_name": spec.system.name, "system_index": spec.system_index, "base_seed": spec.base_seed,
                "seed": spec.seed, "shard": spec.file, "shard_index": spec.shard_index, "group": spec.first_group + g,
                "group_in_shard": g, "samples": spec.samples_per_group, "keys": keys,
                "x_keys": list(task_registry.x_keys(module, out) if hasattr(module, "X_KEYS") else ()),
                "y_keys": list(getattr(module, "Y_KEYS", ())),
                "versions": versions}
        rec = {"__key__": f"{spec.first_group + g:06d}", META_MEMBER: json.dumps(meta, sort_keys=True).encode()}
        rec.update({f"{k}.npy": _npy_bytes(v[g], k) for k, v in out.items()})
        records.append(rec)
    return records


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_tar(records: list[dict], path: Path) -> None:
    """Write ``records`` to ``path`` atomically (tmp file + ``os.replace``), deterministic bytes."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            with wds.TarWriter(f, user="icwm", group="icwm", mode=0o444, mtime=0, encoder=False) as w:
                for rec in records:
                    w.write(rec)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_shard(spec: ShardSpec, out_dir: str | Path, get_task: GetTask) -> dict:
    """Generate and write one shard; returns its ``index.json`` entry.

    The task's ``generate(system, n_groups, samples_per_group, rng)`` runs with
    ``rng = torch.Generator().manual_seed(spec.seed)`` and one torch thread (thread count never changes bytes).
    """
    module = get_task(spec.task)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = torch.Generator().manual_seed(spec.seed)
        out = module.generate(spec.system, spec.n_groups, spec.samples_per_group, rng)
    finally:
        torch.set_num_threads(threads)
    _check_output(out, module, spec)
    path = Path(out_dir) / spec.file
    _write_tar(encode_records(out, spec, module), path)
    return {"file": spec.file, "task": spec.task, "system": spec.system.name, "system_index": spec.system_index,
            "shard_index": spec.shard_index, "groups": spec.n_groups, "samples_per_group": spec.samples_per_group,
            "samples": spec.n_groups * spec.samples_per_group, "seed": spec.seed, "fingerprint": spec.fingerprint(),
            "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _write_job(args: tuple[ShardSpec, str, GetTask]) -> dict:
    return write_shard(*args)


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run_jobs(jobs: list[tuple], workers: int, on_done: Callable[[dict], object]) -> None:
    """Run ``_write_job`` over ``jobs`` in this process or a spawn pool; ``on_done(entry)`` as each ends."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            on_done(_write_job(job))
        return
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
        for entry in pool.imap_unordered(_write_job, jobs):
            on_done(entry)


def load_index(out_dir: str | Path) -> dict:
    """Parsed ``out_dir/index.json`` (complete or not).

    Raises:
        ShardError: naming the path when the directory or index.json is missing, unreadable or not an index.
    """
    out_dir = Path(out_dir)
    path = out_dir / INDEX_NAME
    if not out_dir.is_dir():
        raise ShardError(f"data directory not found ({out_dir})")
    if not path.is_file():
        raise ShardError(f"no {INDEX_NAME}: not a data set written by make_data, or make_data has not started "
                         f"({path})")
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as err:          # ValueError: bad JSON or bad UTF-8
        raise ShardError(f"unreadable {INDEX_NAME}: {err} ({path})") from err
    if not isinstance(index, dict) or index.get("format") != FORMAT or not isinstance(index.get("shards"), list):
        got = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise ShardError(f"{INDEX_NAME}: expected format {FORMAT!r} with a list of shards, got {got!r} ({path})")
    return index


def _write_index(out_dir: Path, head: dict, entries: list[dict], name: str = INDEX_NAME) -> Path:
    """Atomically write ``index.json`` (or a rank's progress file ``name``) = ``head`` (format, config, systems,
    planned_shards) + shard entries, totals and the completeness marker: ``"complete": true`` only in
    ``index.json`` and only when every planned shard is listed (so only the last write of a finished run has it)."""
    complete = name == INDEX_NAME and len(entries) == head["planned_shards"]
    index = {**head, "shards": entries, "total_groups": sum(e["groups"] for e in entries),
             "total_samples": sum(e["samples"] for e in entries), "complete": complete}
    path = out_dir / name
    tmp = out_dir / f".{name}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(index, indent=1, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())                  # the marker never lands before the bytes it vouches for
    os.replace(tmp, path)
    return path


def _part_name(rank: int) -> str:
    return PART_GLOB.replace("*", f"{rank:05d}")


def _old_entries(out_dir: Path) -> dict[str, dict]:
    """Shard entries of earlier runs: ``index.json``, updated by the ranks' progress files (newer than it)."""
    old = {}
    if (out_dir / INDEX_NAME).is_file():
        old = {e["file"]: e for e in load_index(out_dir)["shards"]}
    for part in sorted(out_dir.glob(PART_GLOB)):
        try:                                  # written atomically; an unreadable one only costs rewrites
            old.update({e["file"]: e for e in json.loads(part.read_text())["shards"]})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return old


def _remove_parts(out_dir: Path) -> None:
    for part in out_dir.glob(PART_GLOB):
        part.unlink(missing_ok=True)


def _ordered(specs: list[ShardSpec], entries: dict[str, dict]) -> list[dict]:
    """Entries in plan order (task, system, shard): the index never depends on who wrote what when."""
    return [entries[s.file] for s in specs if s.file in entries]


def _is_complete(spec: ShardSpec, entry: dict | None, out_dir: Path, verify_hash: bool) -> bool:
    path = out_dir / spec.file
    if entry is None or entry.get("fingerprint") != spec.fingerprint() or not path.is_file():
        return False
    if path.stat().st_size != entry["bytes"]:
        return False
    return not verify_hash or sha256_file(path) == entry["sha256"]


@dataclass
class WriteSummary:
    """Outcome of ``write_shards``."""

    written: int
    skipped: int
    groups: int
    samples: int
    bytes: int
    seconds: float
    index_path: str
    written_by_rank: list[int] = field(default_factory=list)   # shards written by rank 0, 1, ...


def write_shards(cfg: DataConfig, get_task: GetTask | None = None, progress: bool = True, rank: int = 0,
                 world_size: int = 1, gather: Gather | None = None) -> WriteSummary:
    """Write every shard of ``cfg`` (resumable, parallel, optionally over several ranks) and ``index.json``.

    Complete shards (listed in an existing index with the same spec fingerprint and, with
    ``cfg.verify_existing``, the same sha256) are skipped; everything else is (re)written atomically.
    The index is refreshed every ``INDEX_EVERY_S`` seconds and at the end, so an interrupted run resumes
    close to where it stopped (unlisted shard files are rewritten); only the write that lists every planned shard
    carries the completeness marker (``"complete": true``) readers require. With ``world_size > 1`` every rank calls
    this with the same ``cfg``: the remaining shards are split by ``rank_share``, each rank refreshes its own
    progress file, and rank 0 merges them into ``index.json`` (the same bytes as a single process writes).

    Args:
        cfg: the data configuration.
        get_task: task id -> module with ``generate``; default ``icwm.tasks.get``. Must be picklable
            (a module-level function) when ``cfg.workers > 1``.
        progress: show a tqdm bar.
        rank, world_size: this process among the ranks sharing the work (``cfg.out_dir`` must be shared).
        gather: all-gather over the ranks (e.g. ``torch.distributed.all_gather_object``); needed when
            ``world_size > 1``.

    Raises:
        RankError: on every rank when writing failed on some rank (the others' finished shards stay indexed).
    """
    get_task = get_task or task_registry.get
    for task in cfg.tasks:
        check(hasattr(get_task(task), "generate"), f"tasks[{task!r}]", "a task module with generate()", task)
    check(world_size == 1 or gather is not None, "gather", "an all-gather function when world_size > 1", gather)
    gather = gather or (lambda obj: [obj])
    t0, systems = time.perf_counter(), {t: cfg.systems_for(t) for t in cfg.tasks}
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = plan_shards(cfg, systems)
    head = {"format": FORMAT, "config": to_dict(cfg), "planned_shards": len(specs),
            "systems": {t: [dataclasses.asdict(s) for s in v] for t, v in systems.items()}}
    done = _complete_entries(specs, out_dir, cfg.verify_existing, rank, world_size, gather)
    if rank == 0:                             # earlier runs' progress files are merged into ``done``: drop them
        _write_index(out_dir, head, _ordered(specs, done))
        _remove_parts(out_dir)
    gather(None)                              # barrier: no rank writes its progress file before that
    todo = rank_share([s for s in specs if s.file not in done], rank, world_size)
    name = INDEX_NAME if world_size == 1 else _part_name(rank)

    def save(written: dict[str, dict]) -> Path:   # single process: index.json; several ranks: own progress file
        return _write_index(out_dir, head, _ordered(specs, {**done, **written}), name)

    bar = tqdm(total=len(done) + len(todo), initial=len(done), unit="shard", disable=not progress,
               desc="shards" if world_size == 1 else f"shards (rank {rank} of {world_size})")
    written, error = _write_todo(todo, out_dir, get_task, cfg.workers, save, bar, world_size == 1)
    outcomes = gather((written, None if error is None else f"{type(error).__name__}: {error}"))
    entries = {**done, **{f: e for w, _ in outcomes for f, e in w.items()}}
    index_path = out_dir / INDEX_NAME
    if rank == 0 and world_size > 1:          # the merge step: one index.json, no progress files left
        _write_index(out_dir, head, _ordered(specs, entries))
        _remove_parts(out_dir)
    _raise_if_failed([msg for _, msg in outcomes], error)
    by_rank = [len(w) for w, _ in outcomes]
    return WriteSummary(written=sum(by_rank), skipped=len(done), groups=sum(e["groups"] for e in entries.values()),
                        samples=sum(e["samples"] for e in entries.values()),
                        bytes=sum(e["bytes"] for e in entries.values()), seconds=time.perf_counter() - t0,
                        index_path=str(index_path), written_by_rank=by_rank)


def _complete_entries(specs: list[ShardSpec], out_dir: Path, verify_hash: bool, rank: int, world_size: int,
                      gather: Gather) -> dict[str, dict]:
    """Index entries of the shards already complete on disk; each rank checks (re-hashes) its share of them."""
    old = _old_entries(out_dir)
    mine = {s.file: old[s.file] for s in rank_share(specs, rank, world_size)
            if _is_complete(s, old.get(s.file), out_dir, verify_hash)}
    return {f: e for part in gather(mine) for f, e in part.items()}


def _write_todo(todo: list[ShardSpec], out_dir: Path, get_task: GetTask, workers: int, save: Callable[[dict], Path],
                bar: tqdm, reraise: bool) -> tuple[dict[str, dict], Exception | None]:
    """Write this rank's shards; ``save(written)`` every ``INDEX_EVERY_S`` seconds and at the end, also on error.

    Returns:
        (file -> index entry of each shard written, the exception that stopped the rank or None). With
        ``reraise`` (a single process) the exception propagates instead; interrupts always do.
    """
    written, last = {}, [-INDEX_EVERY_S]

    def finish(entry: dict) -> None:          # record a finished shard; refresh the index every few seconds
        written[entry["file"]] = entry
        bar.update()
        if time.perf_counter() - last[0] >= INDEX_EVERY_S:
            save(written)
            last[0] = time.perf_counter()

    try:
        _run_jobs([(s, str(out_dir), get_task) for s in todo], workers, finish)
    except Exception as err:                  # several ranks: reported to all of them by the caller
        if reraise:
            raise
        return written, err
    finally:                                  # also on error / interrupt: keep the finished shards listed
        bar.close()
        save(written)
    return written, None


def _raise_if_failed(errors: list[str | None], error: Exception | None) -> None:
    """``RankError`` naming each failed rank's error (chained to this rank's own, if it failed)."""
    failed = [f"rank {r}: {msg}" for r, msg in enumerate(errors) if msg]
    if failed:
        raise RankError(f"shard writing failed on {len(failed)} of {len(errors)} rank(s): {'; '.join(failed)}. "
                        "The finished shards are listed in index.json: rerun the same command to resume.") from error


def _decode_npy(data: bytes) -> torch.Tensor:
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    return torch.from_numpy(np.ascontiguousarray(arr))


def read_shard(path: str | Path) -> Iterator[tuple[dict[str, torch.Tensor], dict]]:
    """Iterate the groups of a shard in stored order.

    Yields:
        (tensors, meta): tensors ``key -> [sample, ...]`` (dtype as written), meta the record's meta.json.

    Raises:
        ShardError: naming the shard when the tar is unreadable, truncated or a record is incomplete.
    """
    path = Path(path)
    key, rec = None, {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                name_key, ext = member.name.split(".", 1)
                if key is not None and name_key != key:
                    yield _finish_record(path, key, rec)
                    rec = {}
                key = name_key
                rec[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        if isinstance(err, ShardError):
            raise
        raise ShardError(f"shard {path.name!r}: unreadable tar ({type(err).__name__}: {err})") from err
    if key is not None:
        yield _finish_record(path, key, rec)


def _finish_record(path: Path, key: str, rec: dict[str, bytes]) -> tuple[dict[str, torch.Tensor], dict]:
    if META_MEMBER not in rec:
        raise ShardError(f"shard {path.name!r}: record {key!r} has no {META_MEMBER}")
    meta = json.loads(rec.pop(META_MEMBER))
    tensors = {ext.removesuffix(".npy"): _decode_npy(data) for ext, data in rec.items()}
    missing = sorted(set(meta["keys"]) - set(tensors))
    if missing:
        raise ShardError(f"shard {path.name!r}: record {key!r} lacks tensors {missing}")
    for name, x in tensors.items():
        bad = _non_finite(x)
        if bad:
            raise ShardError(f"shard {path.name!r}: record {key!r}, tensor {name!r}: {bad} non-finite value(s) "
                             f"(NaN/inf) ({path})")
    return tensors, meta


def load_shard(path: str | Path) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """All groups of a shard stacked: ``key -> [group, sample, ...]`` plus the list of per-group metas."""
    groups = list(read_shard(path))
    if not groups:
        raise ShardError(f"shard {Path(path).name!r}: no records")
    keys = groups[0][0].keys()
    return {k: torch.stack([g[0][k] for g in groups]) for k in keys}, [g[1] for g in groups]


def verify(out_dir: str | Path, raise_on_error: bool = True) -> dict[str, str]:
    """Check every shard of ``out_dir/index.json``: presence, size, sha256, readable tar, group count.

    Returns:
        shard file name -> problem, for every bad shard (empty when all are sound).

    Raises:
        ShardError: when ``raise_on_error`` and some shard is bad; the message names each one.
    """
    out_dir = Path(out_dir)
    problems = {}
    for entry in load_index(out_dir)["shards"]:
        problem = _shard_problem(out_dir / entry["file"], entry)
        if problem:
            problems[entry["file"]] = problem
    if problems and raise_on_error:
        lines = "\n".join(f"  {name}: {why}" for name, why in problems.items())
        raise ShardError(f"{len(problems)} bad shard(s) in {str(out_dir)!r}:\n{lines}")
    return problems


def _shard_problem(path: Path, entry: dict) -> str:
    if not path.is_file():
        return "missing"
    reasons = []
    size = path.stat().st_size
    if size != entry["bytes"]:
        reasons.append(f"truncated or resized ({size} bytes, index says {entry['bytes']})")
    if sha256_file(path) != entry["sha256"]:
        reasons.append("sha256 mismatch")
    try:
        n = sum(1 for _ in read_shard(path))
        if n != entry["groups"]:
            reasons.append(f"{n} groups, index says {entry['groups']}")
    except ShardError as err:
        reasons.append(str(err).split(": ", 1)[-1])
    return "; ".join(reasons)


def open_data_set(out_dir: str | Path) -> dict:
    """The index of the complete data set in ``out_dir``, checked cheaply before any sample is read.

    Checks the completeness marker, every entry's fields, that its path stays inside ``out_dir`` (relative, no
    ``..``), and that its shard exists with the indexed size. Contents are checked later: ``check_shard_hash``
    at first open, finiteness in ``read_shard``.

    Returns:
        The parsed ``index.json``.

    Raises:
        ShardError: naming the directory (incomplete set) or each bad shard with its path.
    """
    root = Path(out_dir)
    index = load_index(root)
    n, planned = len(index["shards"]), index.get("planned_shards")
    if index.get("complete") is not True or n != planned:
        of = f"{n} of {planned}" if isinstance(planned, int) else f"{n} (no completeness marker: an older make_data)"
        raise ShardError(f"incomplete data set: {of} shards listed in {INDEX_NAME}; rerun make_data with the same "
                         f"config to finish it ({root})")
    problems = {}
    for i, entry in enumerate(index["shards"]):
        problem = _entry_problem(root, entry)
        if problem:
            named = isinstance(entry, dict) and isinstance(entry.get("file"), str)
            problems[entry["file"] if named else f"entry {i}"] = problem
    if problems:
        lines = [f"  {name}: {why}" for name, why in list(problems.items())[:MAX_NAMED]]
        more = [f"  ... and {len(problems) - MAX_NAMED} more"] if len(problems) > MAX_NAMED else []
        raise ShardError("\n".join([f"{len(problems)} bad shard(s) in {INDEX_NAME} ({root}):"] + lines + more))
    return index


def _entry_problem(root: Path, entry: object) -> str:
    """Why an index entry cannot be read ('' if it can): fields, path confined to ``root``, presence, size."""
    if not isinstance(entry, dict):
        return f"expected a mapping, got {type(entry).__name__}"
    bad = sorted(k for k, t in ENTRY_FIELDS.items() if not isinstance(entry.get(k), t))
    if bad:
        return f"missing or mistyped fields {bad}"
    if entry["groups"] < 1 or entry["samples_per_group"] < 1:
        return f"expected groups and samples_per_group >= 1, got {entry['groups']}, {entry['samples_per_group']}"
    rel = PurePosixPath(entry["file"])
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return "refused: the path must be relative to the data directory, without '..'"
    path = root / rel
    if not path.is_file():
        return f"missing ({path})"
    size = path.stat().st_size
    if size != entry["bytes"]:
        return f"truncated or resized: {size} bytes, {INDEX_NAME} says {entry['bytes']} ({path})"
    return ""


def check_shard_hash(out_dir: str | Path, entry: dict) -> None:
    """Compare the shard of index ``entry`` with its indexed sha256 (a full read; readers do it at first open).

    Raises:
        ShardError: naming the shard's path when it is unreadable or its bytes differ from the index's hash.
    """
    path = Path(out_dir) / entry["file"]
    try:
        digest = sha256_file(path)
    except OSError as err:
        raise ShardError(f"shard {entry['file']!r}: unreadable ({err.strerror or err}) ({path})") from err
    if digest != entry["sha256"]:
        raise ShardError(f"shard {entry['file']!r}: corrupted, sha256 differs from {INDEX_NAME}; rerun make_data "
                         f"with the same config to rewrite it ({path})")
