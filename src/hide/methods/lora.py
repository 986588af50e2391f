"""Sequential LoRA fine-tuning (CoIN's "FineTune" baseline).

One LoRA adapter on every language-model linear keeps training on each new task in turn, with
the projector; nothing protects earlier tasks, so this is the forgetting reference point.
All arguments are the base ones (`ContinualMethod`): rank, alpha, dropout, init_std, targets,
train_projector.
"""

from hide.methods.base import ContinualMethod


class SequentialLoRA(ContinualMethod):
    name = "lora"
