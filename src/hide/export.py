"""Export a finished run's model to the formats the field's tools read.

    python -m hide.export RUN_DIR --format peft   --out DIR [--stage T]
    python -m hide.export RUN_DIR --format merged --out DIR [--stage T]

- `peft`: a standard LoRA adapter folder (adapter_config.json, adapter_model.safetensors) on the
  language model's linears, with the trained projector as a module to save. Loaded by
  `PeftModel.from_pretrained(LlavaForConditionalGeneration.from_pretrained(BASE), DIR)`, BASE being
  the adapter config's `base_model_name_or_path` (the run's backbone). For every method whose model
  is one LoRA per linear: lora, ewc, lwf, replay, multitask; O-LoRA as its slots concatenated
  (rank k r, alpha k alpha: the sum of its k experts); HiDe with every layer fused.
- `merged`: a llava-hf checkpoint (config, weights, tokenizer, image processor) with every update
  folded into W and the trained projector in place, which `LlavaForConditionalGeneration
  .from_pretrained(DIR)` loads with nothing from this project; for the same methods.

A method whose model is not one product per linear (MoELoRA's per-token router, HiDe's per-sample
routing) is refused with the formats it has; `hide.load_run` serves any method. The export works
on the run's own model object: the backbone is loaded once, whatever its size.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from hide.checkpoint import CheckpointError
from hide.errors import ConfigError, HideError
from hide.methods.base import ContinualMethod
from hide.models.backbone import Backbone

FORMATS = ("peft", "merged")
LANGUAGE_MODEL = "model.language_model"  # the decoder's path inside LlavaForConditionalGeneration


def one_lora_per_linear(method: ContinualMethod, fmt: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """{name in the language model: (A, B, s)}, the update each adapted linear applies at
    evaluation; an error naming the formats the method has when some layer has no such form."""
    updates = {name: layer.low_rank_update() for name, layer in method.adapters.items()}
    mixed = [name for name, update in updates.items() if update is None]
    if mixed:
        raise ConfigError(
            f"method {method.name} cannot be exported as {fmt}: {len(mixed)} of its layers (e.g. {mixed[0]}) mix "
            f"experts per {'token' if method.name == 'moelora' else 'sample'}, which no single LoRA or merged weight "
            f"expresses. Formats it supports: none; hide.load_run(RUN_DIR) rebuilds it with its routing.")
    return updates


def unwrap_adapters(language_model: nn.Module, adapters: dict[str, nn.Module]) -> None:
    """Put each adapted linear's frozen base layer back in its place: the plain Hugging Face model."""
    for name, layer in adapters.items():
        parent_name, _, child = name.rpartition(".")
        setattr(language_model.get_submodule(parent_name), child, layer.base)


def export_peft(backbone: Backbone, method: ContinualMethod, out: Path) -> Path:
    """Write the peft adapter folder; the backbone's model becomes the plain base model with the
    adapters of the folder."""
    from peft import LoraConfig, get_peft_model

    updates = one_lora_per_linear(method, "peft")
    ranks = {name: A.shape[0] for name, (A, _, _) in updates.items()}
    scales = {name: s for name, (_, _, s) in updates.items()}
    rank = max(set(ranks.values()), key=list(ranks.values()).count)
    scale = max(set(scales.values()), key=list(scales.values()).count)
    # peft's scaling is lora_alpha / r: the alpha that gives each layer its own s at its own rank
    pattern = {re.escape(f"{LANGUAGE_MODEL}.{n}"): r for n, r in ranks.items() if r != rank}
    alpha_pattern = {re.escape(f"{LANGUAGE_MODEL}.{n}"): scales[n] * ranks[n] for n in ranks
                     if (ranks[n], scales[n]) != (rank, scale)}
    unwrap_adapters(backbone.language_model, method.adapters)
    config = LoraConfig(r=rank, lora_alpha=scale * rank, lora_dropout=0.0, bias="none",
                        target_modules=[f"{LANGUAGE_MODEL}.{n}" for n in updates], rank_pattern=pattern,
                        alpha_pattern=alpha_pattern,
                        modules_to_save=["multi_modal_projector"] if method.train_projector else None)
    with warnings.catch_warnings():  # peft asks transformers by a name that transformers 5 deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = get_peft_model(backbone.model, config)
    with torch.no_grad():
        for name, (A, B, _) in updates.items():
            layer = model.base_model.model.get_submodule(f"{LANGUAGE_MODEL}.{name}")
            layer.lora_A["default"].weight.copy_(A)
            layer.lora_B["default"].weight.copy_(B)
    model.peft_config["default"].base_model_name_or_path = backbone.name
    model.save_pretrained(out)
    return out


def export_merged(backbone: Backbone, method: ContinualMethod, out: Path) -> Path:
    """Fold every update into its W and write the llava-hf checkpoint; the backbone's model
    becomes that merged model."""
    updates = one_lora_per_linear(method, "merged")
    with torch.no_grad():
        for name, (A, B, s) in updates.items():
            weight = method.adapters[name].base.weight
            weight.copy_((weight.float() + s * (B.float() @ A.float())).to(weight.dtype))
    unwrap_adapters(backbone.language_model, method.adapters)
    backbone.model.save_pretrained(out)
    backbone.tokenizer.save_pretrained(out)
    backbone.image_processor.save_pretrained(out)
    return out


def export_run(run_dir, fmt: str, out, stage: int | None = None) -> Path:
    """Export the model of `stage` (default: the last, which the run must have reached) of the
    finished run in `run_dir` as `fmt` into `out`."""
    from hide.trained import load_run

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}; choose one of {FORMATS}")
    model = load_run(run_dir, stage)
    total = len(model.run.tasks)
    if stage is None and model.stage < total:
        raise CheckpointError(f"{model.run_dir} is unfinished (stages 0..{model.stage} of {total} done): finish it "
                              f"(python train.py ... resume={model.run_dir}) or export a finished stage with --stage")
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} exists and is not empty: give a new folder")
    backbone, method = model.run.backbone, model.run.method
    (export_peft if fmt == "peft" else export_merged)(backbone, method, out)
    print(f"{method.name}, stage {model.stage} of {model.run_dir}: {fmt} export in {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stage", type=int, default=None, help="the stage's model (default: the last)")
    args = parser.parse_args(argv)
    try:
        export_run(args.run_dir, args.format, args.out, args.stage)
    except HideError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
