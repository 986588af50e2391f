"""Experience replay: a small fixed buffer of each finished task's training samples is mixed into
every later task's training data (one LoRA adapter and the projector train throughout, as in
sequential LoRA). The buffer is drawn once per task, uniformly without replacement, from a random
stream of (seed, task), so a run is reproducible and a task's buffer never changes.

Args (besides the LoRA ones of `ContinualMethod`):
    buffer_per_task: samples kept per finished task.
    seed: the buffers' random stream (the run's seed by default, in conf/method/replay.yaml).
"""

from __future__ import annotations

import random

from hide.methods.base import ContinualMethod
from hide.errors import ConfigError


def draw_buffer(records: list, size: int, seed: int, task_index: int) -> list:
    """`size` records (all if fewer), in their original order, drawn by (seed, task_index) alone."""
    if size >= len(records):
        return list(records)
    picked = sorted(random.Random(f"replay-{seed}-{task_index}").sample(range(len(records)), size))
    return [records[i] for i in picked]


class Replay(ContinualMethod):
    name = "replay"

    def __init__(self, buffer_per_task: int = 60, seed: int = 0, **lora):
        super().__init__(**lora)
        if buffer_per_task < 0:
            raise ConfigError(f"method.buffer_per_task must be >= 0, got {buffer_per_task}")
        self.buffer_per_task = buffer_per_task
        self.seed = seed
        self.finished: list[int] = []
        self.buffers: dict[int, list] = {}

    def extra_train_items(self, tasks: list, task_indices: list[int]) -> list[tuple[int, object]]:
        for t in self.finished:
            if t not in self.buffers:
                self.buffers[t] = draw_buffer(tasks[t].train, self.buffer_per_task, self.seed, t)
        # records (paths and texts), not tensors: the buffer costs no memory to speak of
        return [(t, record) for t, buffer in sorted(self.buffers.items()) if t not in task_indices
                for record in buffer]

    def on_task_end(self, module, task_index: int, train_loader) -> None:
        self.finished.append(task_index)

    def state_dict(self) -> dict:
        # the buffers are a function of (seed, task): the finished tasks are enough to redraw them
        return {"finished": list(self.finished)}

    def load_state_dict(self, state: dict) -> None:
        self.finished = list(state["finished"])
