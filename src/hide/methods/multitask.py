"""Multitask joint training: the upper bound.

The same LoRA adapter as sequential LoRA, trained once on the union of all tasks' data. No model
exists between the zero-shot model and the joint one, so rows 1..T-1 of the accuracy matrix are
absent and only the metrics of the final row (Last) are reported.
"""

from hide.methods.base import ContinualMethod


class Multitask(ContinualMethod):
    name = "multitask"

    def stages(self, num_tasks: int) -> list[list[int] | None]:
        return [None] * (num_tasks - 1) + [list(range(num_tasks))]
