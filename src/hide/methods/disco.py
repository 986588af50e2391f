"""DISCO (ICCV 2025, from federated continual instruction tuning): one LoRA slot per task, routed
by the instruction in every layer.

Task t trains slot t alone (as HiDe's experts train). After it, the task's anchor is the mean text
feature of its instructions (only its direction matters). At inference every adapted layer mixes
the trained slots per sample,

    y = W x + s sum_i w_i B_i A_i x,   w = softmax(cos(text feature, anchor_i) / temperature),

which is HiDe with every layer task-specific, text-only anchors and the temperature 0.05: it is
built as that (`hide.methods.hide.HiDe`), sharing HiDe's anchors, routing and batched generation.
The published code averages the text feature over a batch; here each sample is routed by its
own instruction, as HiDe routes.

Args (besides the LoRA ones of `ContinualMethod`):
    temperature: of the routing softmax (0.05 published).
    anchor_encoder: the text features (HiDe's config group: the backbone's own language model on
        the tiny model, CLIP's text encoder at 7B, as published).
"""

from __future__ import annotations

from hide.methods.hide import HiDe


class DISCO(HiDe):
    name = "disco"

    def __init__(self, temperature: float = 0.05, anchor_encoder=None, **lora):
        super().__init__(task_specific_layers="all", routing="anchors", temperature=temperature,
                         image_weight=0.0, text_weight=1.0, top_k=None, anchor_encoder=anchor_encoder, **lora)

    def run_facts(self) -> dict:
        return {}  # every layer routes: HiDe's task-specific layers say nothing here
