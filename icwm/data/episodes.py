"""Episode sampler: batches of in-context episodes (k demos + 1 query from ONE group), one task per batch.

Stream model. An epoch is a sequence of ``L`` global batches; global batch ``i`` is a pure function of
(seed, epoch, i): its task is drawn by the configured weights, its content comes from the source, its ``k`` is
drawn uniformly in ``[k_min, k_max]``. Rank ``r`` of ``W`` takes global batches ``r, r + W, r + 2W, ...``
(``L`` is rounded up to a multiple of ``W`` so all ranks take the same number of steps); within a rank,
DataLoader worker ``w`` of ``n`` takes the rank's positions ``start + w, start + w + n, ...``, which the
DataLoader's in-order round robin reassembles into the rank's stream. Hence ranks and workers are disjoint
and covering, the stream does not depend on the worker count, and ``(epoch, position)`` is a complete
resume state.

A batch is a dict: every task tensor as ``[batch, k + 1, ...]`` (demos first, query last), plus ``task``
(str), ``k`` (int), ``system`` (str), ``shard`` (str, "" when generated), ``epoch`` and ``index`` (global
batch index, int).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from icwm import tasks as task_registry
from icwm.config import check
from icwm.data.config import EpisodeConfig, resolve_systems

TIME_ORDERED = ("cp",)   # tasks whose group samples are consecutive windows of one trajectory
from icwm.data.shards import GetTask, ShardError, check_shard_hash, load_shard, open_data_set, stable_seed

RESERVED = ("task", "k", "system", "shard", "groups", "epoch", "index")
PLAN_BLOCK = 1024    # task picks are drawn in blocks so the plan of batch i does not depend on L


def make_generator(*parts: object) -> torch.Generator:
    """CPU ``torch.Generator`` seeded by a stable hash of ``parts``."""
    return torch.Generator().manual_seed(stable_seed(*parts))


def _weights(cfg: EpisodeConfig, available: list[str]) -> tuple[list[str], list[float]]:
    """Tasks with a positive weight and their weights ({} = uniform over ``available``)."""
    if not cfg.task_weights:
        return list(available), [1.0] * len(available)
    tasks = [t for t in task_registry.TASKS if cfg.task_weights.get(t, 0.0) > 0]
    for t in tasks:
        check(t in available, "task_weights", f"tasks present in the source ({available})", t)
    return tasks, [cfg.task_weights[t] for t in tasks]


class ShardSource:
    """Episodes read from the shards of ``cfg.shards_dir/index.json``.

    Per task, an endless stream of passes: pass ``p`` visits the task's shards in a shuffled order; each shard
    contributes ``ceil(groups * episodes_per_group / batch_size)`` batches, whose episodes are a shuffled
    sequence of the shard's groups (wrapping around so every batch is full).

    Nothing unchecked is sampled: start-up refuses an incomplete set, index paths outside ``shards_dir`` and
    missing or resized shards (``open_data_set``, sizes only); each process checks a shard's sha256 the first
    time it opens it, and every decoded float / complex tensor must be finite (``ShardError`` naming the shard).
    """

    def __init__(self, cfg: EpisodeConfig):
        self.cfg, self.root = cfg, Path(cfg.shards_dir)
        entries = open_data_set(self.root)["shards"]
        check(len(entries) > 0, "shards_dir", "an index listing at least one shard", str(self.root))
        available = sorted({e["task"] for e in entries}, key=task_registry.TASKS.index)
        self.tasks, self.weights = _weights(cfg, available)
        self.shards = {t: [e for e in entries if e["task"] == t] for t in self.tasks}
        for e in entries:
            check(cfg.k_max + 1 <= e["samples_per_group"], "k_max",
                  f"k_max + 1 <= samples_per_group ({e['samples_per_group']} in {e['file']})", cfg.k_max)
        self._cache: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self._hashed: set[str] = set()        # shards whose sha256 this process has checked

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": OrderedDict(), "_hashed": set()}   # workers load and check their own

    def _batches(self, entry: dict) -> int:
        return math.ceil(entry["groups"] * self.cfg.episodes_per_group / self.cfg.batch_size)

    def epoch_batches(self) -> int:
        """Batches in one pass over every task's shards (the default epoch length)."""
        return sum(self._batches(e) for t in self.tasks for e in self.shards[t])

    def _load(self, entry: dict) -> dict[str, torch.Tensor]:
        """Decoded tensors ``key -> [group, sample, ...]`` of the shard of ``entry`` (LRU cache); its sha256 is
        checked the first time this process opens it."""
        file = entry["file"]
        if file not in self._cache:
            if file not in self._hashed:
                check_shard_hash(self.root, entry)
                self._hashed.add(file)
            self._cache[file] = _checked_shape(load_shard(self.root / file)[0], entry, self.root)
            while len(self._cache) > self.cfg.cache_shards:
                self._cache.popitem(last=False)
        self._cache.move_to_end(file)
        return self._cache[file]

    def _locate(self, task: str, j: int, epoch: int) -> tuple[dict, torch.Tensor]:
        """Shard entry and group indices [batch] of the task stream's ``j``-th batch."""
        shards, seed = self.shards[task], self.cfg.seed
        per_pass = sum(self._batches(e) for e in shards)
        p, off = divmod(j, per_pass)
        for s in torch.randperm(len(shards), generator=make_generator(seed, "order", epoch, task, p)).tolist():
            if off < self._batches(shards[s]):
                break
            off -= self._batches(shards[s])
        entry = shards[s]
        n_ep = entry["groups"] * self.cfg.episodes_per_group
        perm = torch.randperm(n_ep, generator=make_generator(seed, "episodes", epoch, task, p, entry["file"]))
        pick = perm[(off * self.cfg.batch_size + torch.arange(self.cfg.batch_size)) % n_ep]
        return entry, pick % entry["groups"]

    def batch(self, task: str, j: int, epoch: int, k: int, rng: torch.Generator) -> dict:
        """The ``j``-th batch of ``task``'s stream with ``k`` demos: tensors ``[batch, k + 1, ...]``."""
        entry, groups = self._locate(task, j, epoch)
        data = self._load(entry)
        order = torch.argsort(torch.rand(len(groups), entry["samples_per_group"], generator=rng), dim=1)
        samples = order[:, : k + 1]                                          # [batch, k + 1], query last
        if task in TIME_ORDERED:   # windows of one trajectory: demos strictly before the query, as at inference
            samples = samples.sort(dim=1).values
        out = {key: x[groups[:, None], samples] for key, x in data.items()}  # [batch, k + 1, ...]
        return {**out, "system": entry["system"], "shard": entry["file"], "groups": groups.tolist()}


def _checked_shape(data: dict[str, torch.Tensor], entry: dict, root: Path) -> dict[str, torch.Tensor]:
    """``data`` (a decoded shard) when every tensor's leading dims are the indexed [groups, samples_per_group]."""
    lead = (entry["groups"], entry["samples_per_group"])
    for key, x in data.items():
        if tuple(x.shape[:2]) != lead:
            raise ShardError(f"shard {entry['file']!r}: tensor {key!r} has leading dims {tuple(x.shape[:2])}, "
                             f"index.json says [groups, samples] = {lead} ({root / entry['file']})")
    return data


class GeneratorSource:
    """Episodes generated on the fly: each batch calls ``generate(system, batch_size, k + 1, rng)`` for a
    system drawn uniformly from ``cfg.families`` + ``cfg.systems``; ``rng`` is seeded per (seed, epoch,
    global batch index), i.e. per (seed, rank, step)."""

    def __init__(self, cfg: EpisodeConfig, get_task: GetTask | None = None):
        self.cfg, self.get_task = cfg, get_task or task_registry.get
        self.systems = resolve_systems(cfg.families, cfg.systems, "families/systems")
        self.tasks, self.weights = _weights(cfg, list(task_registry.TASKS))
        for t in self.tasks:
            check(hasattr(self.get_task(t), "generate"), f"task_weights[{t!r}]", "a task with generate()", t)

    def epoch_batches(self) -> int:
        """Configured epoch length (``batches_per_epoch``)."""
        return self.cfg.batches_per_epoch

    def batch(self, task: str, j: int, epoch: int, k: int, rng: torch.Generator) -> dict:
        """A fresh batch of ``task`` with ``k`` demos: tensors ``[batch, k + 1, ...]``."""
        system = self.systems[int(torch.randint(len(self.systems), (), generator=rng))]
        out = self.get_task(task).generate(system, self.cfg.batch_size, k + 1, rng)
        return {**out, "system": system.name, "shard": ""}


def make_source(cfg: EpisodeConfig, get_task: GetTask | None = None) -> ShardSource | GeneratorSource:
    """The source named by ``cfg.source``."""
    return ShardSource(cfg) if cfg.source == "shards" else GeneratorSource(cfg, get_task)


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EpisodeDataset(IterableDataset):
    """Iterable of episode batches for one rank; iterate it directly or through a DataLoader
    (``batch_size=None``). ``state_dict()`` is exact when iterated in this process; with DataLoader workers
    use ``EpisodeLoader``, which counts consumed batches.

    Args:
        cfg: episode configuration.
        rank, world_size: data-parallel position (default: torch.distributed if initialised, else 0 / 1).
        source: a prepared source (default ``make_source(cfg, get_task)``).
        get_task: task id -> module (generate source only), picklable for worker processes.
    """

    def __init__(self, cfg: EpisodeConfig, rank: int | None = None, world_size: int | None = None,
                 source: ShardSource | GeneratorSource | None = None, get_task: GetTask | None = None):
        super().__init__()
        r, w = _dist_rank_world()
        self.rank, self.world_size = (r if rank is None else rank), (w if world_size is None else world_size)
        check(self.world_size >= 1, "world_size", "an integer >= 1", self.world_size)
        check(0 <= self.rank < self.world_size, "rank", f"0 <= rank < world_size ({self.world_size})", self.rank)
        self.cfg, self.source = cfg, source or make_source(cfg, get_task)
        base = cfg.batches_per_epoch or self.source.epoch_batches()
        self.global_len = math.ceil(base / self.world_size) * self.world_size
        self.epoch, self.position = 0, 0
        self._plan: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        return self.global_len // self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning."""
        self.load_state_dict({"epoch": epoch, "position": 0})

    def state_dict(self) -> dict[str, int]:
        """Resume state: ``epoch`` and ``position`` (batches of this rank already yielded in the epoch)."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from ``state_dict()``: the next batch is the one that would have followed."""
        check(0 <= state["position"] <= len(self), "position", f"0..{len(self)}", state["position"])
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def _task_plan(self, epoch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Task index [n] and position in that task's stream [n] of global batches 0..n-1 of ``epoch``,
        n >= ``length``; prefix-stable (picks are drawn in blocks of ``PLAN_BLOCK``)."""
        if self._plan is None or self._plan[0] != epoch or len(self._plan[1]) < length:
            w = torch.tensor(self.source.weights, dtype=torch.float64)
            n_blocks = math.ceil(max(length, self.global_len) / PLAN_BLOCK)
            picks = torch.cat([torch.multinomial(w, PLAN_BLOCK, replacement=True, generator=make_generator(
                self.cfg.seed, "tasks", epoch, b)) for b in range(n_blocks)])
            pos = torch.zeros_like(picks)
            for t in range(len(w)):
                idx = (picks == t).nonzero().squeeze(1)
                pos[idx] = torch.arange(len(idx))
            self._plan = (epoch, picks, pos)
        return self._plan[1], self._plan[2]

    def k_high(self, epoch: int, i: int) -> int:
        """Upper bound of k for global batch ``i`` of ``epoch``: the curriculum ``k_ramp`` (linear in the run's
        global batch index ``epoch * global_len + i``), then ``k_max``."""
        g, cfg = epoch * self.global_len + i, self.cfg
        if cfg.k_ramp <= 0 or g >= cfg.k_ramp:
            return cfg.k_max
        return cfg.k_min + (cfg.k_max - cfg.k_min) * (g + 1) // cfg.k_ramp

    def batch_at(self, epoch: int, i: int) -> dict:
        """Global batch ``i`` of ``epoch`` (independent of rank, worker and history)."""
        picks, pos = self._task_plan(epoch, i + 1)
        task = self.source.tasks[int(picks[i])]
        rng = make_generator(self.cfg.seed, "batch", epoch, i)
        k = int(torch.randint(self.cfg.k_min, self.k_high(epoch, i) + 1, (), generator=rng))
        out = self.source.batch(task, int(pos[i]), epoch, k, rng)
        clash = [key for key in RESERVED if key in out and key not in ("system", "shard", "groups")]
        check(not clash, f"{task} tensors", f"no key among {RESERVED}", clash)
        return {**out, "task": task, "k": k, "epoch": epoch, "index": i}

    def __iter__(self) -> Iterator[dict]:
        """The rest of the current epoch for this rank (this worker's share); then the state moves to the
        next epoch (in-process iteration)."""
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, start = self.epoch, self.position
        for n in range(start + wid, len(self), nw):
            self.position = n + 1
            yield self.batch_at(epoch, self.rank + n * self.world_size)
        if info is None:
            self.epoch, self.position = epoch + 1, 0


class EpisodeLoader:
    """Endless batch iterator over epochs through a DataLoader with ``num_workers`` workers; resumable.

    Args:
        dataset: the rank's ``EpisodeDataset`` (its state is the starting point).
        num_workers: DataLoader worker processes (0 = in this process).
        multiprocessing_context: e.g. "spawn" (default: torch's default).
        pin_memory: DataLoader ``pin_memory``.
    """

    def __init__(self, dataset: EpisodeDataset, num_workers: int = 0, multiprocessing_context: str | None = None,
                 pin_memory: bool = False):
        check(num_workers >= 0, "num_workers", "an integer >= 0", num_workers)
        self.dataset, self.num_workers = dataset, num_workers
        self.context, self.pin_memory = multiprocessing_context, pin_memory
        self.epoch, self.position = dataset.epoch, dataset.position

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position"}``: batches consumed so far in the current epoch."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next batch is the one following the saved position."""
        self.dataset.load_state_dict(state)
        self.epoch, self.position = self.dataset.epoch, self.dataset.position

    def __iter__(self) -> Iterator[dict]:
        while True:
            if self.position >= len(self.dataset):
                self.epoch, self.position = self.epoch + 1, 0
            self.dataset.load_state_dict({"epoch": self.epoch, "position": self.position})
            ctx = self.context if self.num_workers > 0 else None
            loader = DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers,
                                multiprocessing_context=ctx, pin_memory=self.pin_memory)
            try:
                for batch in loader:
                    self.position += 1
                    yield batch
            except ShardError as err:     # raised in a worker, torch's copy embeds the worker's traceback
                raise ShardError(_worker_message(str(err))) from None


def _worker_message(msg: str) -> str:
    """The original message of a ``ShardError`` re-raised by a DataLoader from a worker (unchanged otherwise)."""
    head, sep, tail = msg.rpartition(f"{ShardError.__name__}: ")
    return tail.strip() if sep and "Traceback" in head else msg
