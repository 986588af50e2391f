"""Benchmarks (which tasks, read from where) and the continual datamodule (what one stage trains
on, and each task's test set)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from hide.data import synth
from hide.data.collate import Encoder, EvalCollator, TrainCollator
from hide.data.formats import ON_BAD_RECORD, BadRecord, DataFormatError, TaskData, TaskSpec, load_task
from hide.errors import ConfigError
from hide.metrics.qa import check_scoring
from hide.distributed import global_rank, world_size
from hide.models.backbone import Backbone

log = logging.getLogger(__name__)


class Benchmark:
    """A sequence of tasks in the UCIT on-disk layout under `data_dir`.

    Args:
        data_dir: root holding `datasets/` and `instructions/`.
        tasks: task specs in training order (name, kind, dir, train_file, test_file, references_file).
        num_tasks: use only the first N tasks (None: all).
        select: use only these tasks, by name, in the benchmark's order (None: all); applied
            before num_tasks. `benchmark.select=[IconQA]` trains and scores one task alone.
        train_per_task, test_per_task: keep the first K records of each file (None: all).
        max_new_tokens: generation budget for this benchmark's answers (a task's own
            `max_new_tokens` overrides it).
        scoring: "original" scores QA answers exactly as the official scorer does, quirks
            included; "corrected" with its faults fixed (docs/protocol.md).
    """

    def __init__(self, data_dir: str, tasks: list[dict], num_tasks: int | None = None,
                 train_per_task: int | None = None, test_per_task: int | None = None,
                 max_new_tokens: int = 128, check_images: bool = True, select: list[str] | None = None,
                 scoring: str = "original"):
        check_scoring(scoring)
        self.scoring = scoring
        self.data_dir = Path(data_dir).expanduser()
        specs = [TaskSpec(**dict(t)) for t in tasks]
        if select is not None:
            known = [s.name for s in specs]
            unknown = [name for name in select if name not in known]
            if unknown:
                raise ConfigError(f"benchmark.select names unknown task(s) {unknown}; this benchmark's tasks are {known}")
            specs = [s for s in specs if s.name in set(select)]
        if num_tasks is not None:
            if not 1 <= num_tasks <= len(specs):
                raise ConfigError(f"benchmark.num_tasks={num_tasks}, but the benchmark has {len(specs)} tasks")
            specs = specs[:num_tasks]
        self.specs = specs
        self.train_per_task = train_per_task
        self.test_per_task = test_per_task
        self.max_new_tokens = max_new_tokens
        self.check_images = check_images

    def train_limit(self, task_name: str) -> int | None:
        """How many training records of this task are kept (None: all)."""
        return self.train_per_task

    # The general-ability sets (`retention_sets` in conf/train.yaml) a run on this benchmark is
    # scored on with eval.retention=auto: none for a benchmark read from disk.
    general_ability: tuple[str, ...] = ()

    @property
    def task_names(self) -> list[str]:
        return [s.name for s in self.specs]

    def prepare(self) -> None:
        """Make the files exist (the synthetic benchmark generates them)."""
        if not self.data_dir.exists():
            raise DataFormatError(
                f"Benchmark directory {self.data_dir} does not exist: set paths.data_dir to the root "
                f"that holds datasets/ and instructions/ (see experiments/ucit/README.md)."
            )

    def check(self) -> list:
        """`python -m hide.data.check`'s reports for this benchmark's tree: every fault, one pass."""
        from hide.data.check import check_benchmark

        return check_benchmark(self.data_dir, self.specs)

    def load(self, on_bad_record: str = "error", max_image_pixels: int | None = None,
             skipped: list[BadRecord] | None = None) -> list[TaskData]:
        """Every task, validated (`load_task`); records left out under on_bad_record=skip are
        appended to `skipped` as (task name, BadRecord)."""
        self.prepare()
        tasks = []
        for spec in self.specs:
            bad: list[BadRecord] = []
            tasks.append(load_task(self.data_dir, spec, self.train_limit(spec.name), self.test_per_task, self.check_images,
                                   on_bad_record=on_bad_record, max_image_pixels=max_image_pixels, skipped=bad))
            tasks[-1].scoring = self.scoring
            if skipped is not None:
                skipped.extend((spec.name, b) for b in bad)
        return tasks


class SyntheticBenchmark(Benchmark):
    """The six procedurally generated tasks (`hide.data.synth`), written on first use in the
    UCIT layout under `root/<sizes and seed>/` and then read by the same loader as UCIT. Its own
    general-ability set (held-out questions of the pretraining mixture) is scored by default."""

    general_ability = ("general",)

    def __init__(self, root: str, num_tasks: int | None = None, train_per_task: int = 600,
                 test_per_task: int = 200, image_size: int = 64, seed: int = 0, max_new_tokens: int = 32,
                 select: list[str] | None = None, train_scale: dict[str, float] | None = None,
                 object_captions: str = "fixed", object_caption_color_share: float = 0.7):
        self.image_size = image_size
        self.seed = seed
        unknown = sorted(set(train_scale or {}) - set(synth.TASK_NAMES))
        if unknown:
            raise ConfigError(f"benchmark.train_scale names unknown task(s) {unknown}; the tasks are {synth.TASK_NAMES}")
        sizes = {name: round(train_per_task * float(factor)) for name, factor in (train_scale or {}).items()}
        self.train_sizes = {name: n for name, n in sizes.items() if n != train_per_task}
        own_sizes = "".join(f"-{name}{n}" for name, n in sorted(self.train_sizes.items()))
        if object_captions not in synth.object_caption.REFERENCES:
            raise ConfigError(f"benchmark.object_captions={object_captions!r}; choose one of {synth.object_caption.REFERENCES}")
        color_share = float(object_caption_color_share)
        if not 0.0 <= color_share <= 1.0:
            raise ConfigError(f"benchmark.object_caption_color_share={object_caption_color_share!r} must lie in [0, 1]")
        # the default data are written without options, as before there were any
        varied = object_captions != "fixed"
        self.task_options = ({synth.object_caption.NAME: {"references": object_captions, "color_share": color_share}}
                             if varied else {})
        options = f"-oc{object_captions}{color_share:g}" if varied else ""
        data_dir = Path(root).expanduser() / f"n{train_per_task}{own_sizes}-t{test_per_task}-px{image_size}-s{seed}{options}"
        super().__init__(str(data_dir), synth.SYNTH_TASKS, num_tasks, train_per_task, test_per_task,
                         max_new_tokens, select=select)

    def prepare(self) -> None:
        # All six tasks are generated even when fewer are used, so that the files do not depend
        # on which tasks a run selects.
        synth.generate_benchmark(self.data_dir, train_per_task=self.train_per_task,
                                 test_per_task=self.test_per_task, image_size=self.image_size,
                                 seed=self.seed, train_sizes=self.train_sizes or None,
                                 task_options=self.task_options or None)

    def train_limit(self, task_name: str) -> int:
        return self.train_sizes.get(task_name, self.train_per_task)


class ContinualDataModule(pl.LightningDataModule):
    """Serves the training data of one stage (one task, or several for joint training and replay)
    and each task's test set. Items are (task index, record) so batches know their tasks.

    Args:
        benchmark: where the tasks come from.
        batch_size: per-device training batch size.
        eval_batch_size: per-device generation batch size.
        num_workers: DataLoader workers.
        max_length: longest tokenised conversation accepted (longer ones are an error, not truncated).
        on_bad_record: "error" (stop at the first bad record, naming it) or "skip" (leave bad records
            out, decode every image at load, and report their count and ids: `skipped`).
        max_image_pixels: images larger than this are bad records (None: no limit).
        seed: shuffling seed (each stage's order is a function of seed and stage).
    """

    def __init__(self, benchmark: Benchmark, batch_size: int = 16, eval_batch_size: int = 64,
                 num_workers: int = 0, max_length: int = 2048, on_bad_record: str = "error",
                 max_image_pixels: int | None = 50_000_000, seed: int = 0):
        if on_bad_record not in ON_BAD_RECORD:
            raise ConfigError(f"data.on_bad_record={on_bad_record!r}; choose one of {ON_BAD_RECORD}")
        super().__init__()
        self.benchmark = benchmark
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.max_length = max_length
        self.on_bad_record = on_bad_record
        self.max_image_pixels = max_image_pixels
        self.skipped: list[tuple[str, BadRecord]] = []
        self.seed = seed
        self.tasks: list[TaskData] = []
        self.stage_tasks: list[int] = []
        self.extra_items: list[tuple[int, object]] = []
        self.stage = 0
        self.resume_position = (0, 0)
        self.encoder: Encoder | None = None

    def load(self, backbone: Backbone) -> list[TaskData]:
        self.encoder = Encoder.for_backbone(backbone, self.max_length)
        self.skipped = []
        self.tasks = self.benchmark.load(self.on_bad_record, self.max_image_pixels, self.skipped)
        return self.tasks

    def set_stage(self, stage: int, task_indices: list[int], extra_items: list[tuple[int, object]] | None = None) -> None:
        """Train on `task_indices` (and `extra_items`, e.g. a replay buffer) from now on."""
        self.stage = stage
        self.stage_tasks = list(task_indices)
        self.extra_items = list(extra_items or [])

    def train_items(self, task_indices: list[int]) -> list[tuple[int, object]]:
        return [(t, record) for t in task_indices for record in self.tasks[t].train]

    def train_dataloader(self) -> DataLoader:
        """This rank's training batches. With W data-parallel ranks, global batch k is batch k of a
        single process with batch size W x batch_size (the same shuffle), and rank r trains on its
        r-th slice: so a W-process run sees the single-process run's global batches, in its order.
        After `resume_at(epoch, batches)` the first epoch served starts where a checkpoint stood."""
        items = self.stage_items()
        sampler = RankShardedBatches(len(items), self.batch_size, global_rank(), world_size(),
                                     self._train_generator(), start=self.resume_position)
        self.resume_position = (0, 0)
        return DataLoader(items, batch_sampler=sampler, collate_fn=TrainCollator(self.encoder),
                          num_workers=self.num_workers)

    def resume_at(self, epoch: int, batches: int) -> None:
        """The next training loader skips `epoch` epochs and `batches` batches of the next (a
        resumed task continues with the batch after its checkpoint, shuffled as before)."""
        self.resume_position = (epoch, batches)

    def full_train_dataloader(self) -> DataLoader:
        """Every training item of the stage, in the single-process order (for end-of-task work that
        every rank does alike or shards itself, e.g. per-task anchors, EWC's Fisher)."""
        return DataLoader(self.stage_items(), batch_size=self.batch_size, shuffle=True, generator=self._train_generator(),
                          collate_fn=TrainCollator(self.encoder), num_workers=self.num_workers)

    def stage_items(self) -> list[tuple[int, object]]:
        """The stage's own tasks' records, then the extra ones (e.g. a replay buffer)."""
        return self.train_items(self.stage_tasks) + self.extra_items

    def _train_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1000 + self.stage)

    def test_dataloader(self, task_index: int) -> DataLoader:
        """A task's test prompts, with its evaluation settings (`TaskSpec`: prompt suffix, image
        processing, generation budget); with W ranks, rank r answers every W-th one (the loop
        gathers them)."""
        task = self.tasks[task_index]
        return self.records_dataloader(task.test, task_index, EvalCollator.for_task(self.encoder, task.spec))

    def records_dataloader(self, records: list, task_index: int = -1, collate: EvalCollator | None = None) -> DataLoader:
        """Test prompts of `records` as task `task_index` (-1: none of the benchmark's, e.g. a
        general-ability set), sharded over ranks as `test_dataloader`; `collate` carries the
        evaluation settings (None: the defaults, with the run's budget)."""
        items = [(task_index, record) for record in records]
        collate = collate or EvalCollator(self.encoder)
        return DataLoader(items, batch_size=self.eval_batch_size, sampler=RankShard(len(items)), collate_fn=collate,
                          num_workers=self.num_workers)


class RankShard(torch.utils.data.Sampler):
    """Every world-th of n items, from this rank's index on, in order. The rank and the world are
    read when the loader is iterated, not when it is built: the base model's test loaders are built
    before Lightning starts the process group, and each rank must still answer only its shard."""

    def __init__(self, n: int):
        self.n = n

    def __iter__(self):
        return iter(range(global_rank(), self.n, world_size()))

    def __len__(self) -> int:
        return len(range(global_rank(), self.n, world_size()))


class RankShardedBatches(torch.utils.data.Sampler):
    """Batches of one data-parallel rank: each epoch one shuffle of all n items (the generator's
    randperm, as a single process's RandomSampler draws it), cut into global batches of
    per_device x world items; rank r takes the r-th of `world` near-equal slices of each. A last
    global batch too small to give every rank an item is dropped, so all ranks step together."""

    def __init__(self, n: int, per_device: int, rank: int, world: int, generator: torch.Generator,
                 start: tuple[int, int] = (0, 0)):
        self.n, self.per_device, self.rank, self.world, self.generator = n, per_device, rank, world, generator
        self.start = start  # (epochs, batches) to skip on the first iteration: a resumed task

    @property
    def batch_size(self) -> int:
        """The per-device batch size, as a BatchSampler names it (Lightning's DeepSpeed strategy
        reads it for DeepSpeed's train_micro_batch_size_per_gpu)."""
        return self.per_device

    def _global_batches(self, order: list[int]):
        size = self.per_device * self.world
        for start in range(0, self.n, size):
            chunk = order[start:start + size]
            if len(chunk) >= self.world:
                yield chunk

    def _shuffle(self) -> list[int]:
        # A single process's DataLoader(shuffle=True, generator=g) first draws its workers' base seed
        # from g, then the permutation: draw alike, so the orders agree (tests/test_ddp.py checks it).
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return torch.randperm(self.n, generator=self.generator).tolist()

    def __iter__(self):
        epochs, skip = self.start
        self.start = (0, 0)
        if skip >= len(self):  # the checkpoint closed an epoch: go on with the next one
            epochs, skip = epochs + 1, 0
        for _ in range(epochs):
            self._shuffle()  # the shuffles of the epochs before the checkpoint
        for k, chunk in enumerate(self._global_batches(self._shuffle())):
            if k >= skip:
                yield chunk[self.rank * len(chunk) // self.world:(self.rank + 1) * len(chunk) // self.world]

    def __len__(self) -> int:
        return sum(1 for _ in self._global_batches(list(range(self.n))))
