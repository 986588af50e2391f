"""Zero-shot: the base model, never trained on any task (the lower bound).

Every row of its accuracy matrix is the base model's, so BWT and Forgetting are 0 by construction
and Last is the zero-shot average.
"""

from hide.methods.base import ContinualMethod
from hide.models.backbone import Backbone


class ZeroShot(ContinualMethod):
    name = "zeroshot"

    def attach(self, backbone: Backbone, num_tasks: int) -> None:
        backbone.model.requires_grad_(False)

    def stages(self, num_tasks: int) -> list[list[int] | None]:
        return [[] for _ in range(num_tasks)]
