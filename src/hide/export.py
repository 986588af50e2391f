"""Export a finished run's model to the formats the field's tools read.

    python -m hide.export RUN_DIR --format peft   --out DIR [--stage T]
    python -m hide.export RUN_DIR --format merged --out DIR [--stage T]

- `peft`: a standard LoRA adapter folder (adapter_config.json, adapter_model.safetensors) on the
  language model's linears, with the trained projector as a module to save. Loaded by
  `PeftModel.from_pretrained(MODEL_CLASS.from_pretrained(BASE), DIR)`, MODEL_CLASS being the
  family's (LlavaForConditionalGeneration, Qwen2_5_VLForConditionalGeneration) and BASE the
  adapter config's `base_model_name_or_path` (the run's backbone). For every method whose model
  is one LoRA per linear: lora, ewc, lwf, replay, multitask; O-LoRA as its slots concatenated
  (rank k r, alpha k alpha: the sum of its k experts); hide with every layer fused.
- `merged`: a checkpoint of the family's (config, weights, tokenizer, image processor) with every
  update folded into W and the trained projector in place, which `MODEL_CLASS.from_pretrained(DIR)`
  loads with nothing from this project; for the same methods, and for a
  method that routes some layers per sample (`ContinualMethod.writes_unmerged_layers`): the other
  layers folded, the routed layers' experts beside the checkpoint as peft adapters named by task
  (`experts/<task>/`), with the method's state and settings (`method_state.pt`,
  `hide_export.json`), which `hide.load_run(DIR)` reads back into the routed model.

A per-token router (moelora) has neither form, per-sample routing no peft form: such exports are
refused with the formats the method has; `hide.load_run` serves any method. The export works on the
run's own model object: the backbone is loaded once, whatever its size.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from hide.checkpoint import CheckpointError
from hide.errors import ConfigError, exit_status
from hide.methods.base import ContinualMethod
from hide.models.backbone import Backbone

FORMATS = ("peft", "merged")


def low_rank_updates(method: ContinualMethod, fmt: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, float] | None]:
    """{name in the language model: (A, B, s)}, the update each adapted linear applies at
    evaluation (None where no single product gives it); an error naming the formats the method
    has when `fmt` cannot hold such a layer."""
    if not method.adapters:
        raise ConfigError(f"method {method.name} trains no adapters: its model is the base checkpoint itself")
    updates = {name: layer.low_rank_update() for name, layer in method.adapters.items()}
    mixed = [name for name, update in updates.items() if update is None]
    if mixed and not (fmt == "merged" and method.writes_unmerged_layers):
        supported = "merged (those layers written beside the checkpoint)" if method.writes_unmerged_layers else \
            "none; hide.load_run(RUN_DIR) rebuilds it with its routing"
        raise ConfigError(
            f"method {method.name} cannot be exported as {fmt}: {len(mixed)} of its layers (e.g. {mixed[0]}) route "
            f"their inputs between experts (per token or per sample), which no single LoRA or merged weight "
            f"expresses. Formats it supports: {supported}.")
    return updates


def write_peft_adapters(backbone: Backbone, adapters: dict[str, dict[str, tuple]], out: Path,
                        modules_to_save: list[str] | None = None) -> None:
    """Named peft LoRA adapters on the backbone's (plain) model: {adapter name: {linear's name in
    the language model: (A, B, s)}}, saved by peft (`out` for the name "default", else
    `out/<name>/`). The backbone's model is wrapped by peft afterwards."""
    from peft import LoraConfig, get_peft_model

    if not adapters:
        return
    model = None
    for adapter_name, updates in adapters.items():
        ranks = {name: A.shape[0] for name, (A, _, _) in updates.items()}
        language_model = backbone.family.language_model_path
        scales = {name: s for name, (_, _, s) in updates.items()}
        rank = max(set(ranks.values()), key=list(ranks.values()).count)
        scale = max(set(scales.values()), key=list(scales.values()).count)
        # peft's scaling is lora_alpha / r: the alpha that gives each layer its own s at its own rank
        config = LoraConfig(
            r=rank, lora_alpha=scale * rank, lora_dropout=0.0, bias="none",
            target_modules=[f"{language_model}.{n}" for n in updates],
            rank_pattern={re.escape(f"{language_model}.{n}"): r for n, r in ranks.items() if r != rank},
            alpha_pattern={re.escape(f"{language_model}.{n}"): scales[n] * ranks[n] for n in ranks
                           if (ranks[n], scales[n]) != (rank, scale)},
            modules_to_save=modules_to_save)
        if model is None:
            with warnings.catch_warnings():  # peft asks transformers by a name that transformers 5 deprecates
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                model = get_peft_model(backbone.model, config, adapter_name=adapter_name)
        else:
            model.add_adapter(adapter_name, config)
        with torch.no_grad():
            for name, (A, B, _) in updates.items():
                layer = model.base_model.model.get_submodule(f"{language_model}.{name}")
                layer.lora_A[adapter_name].weight.copy_(A)
                layer.lora_B[adapter_name].weight.copy_(B)
        model.peft_config[adapter_name].base_model_name_or_path = backbone.name
    model.save_pretrained(out)


def unwrap_adapters(language_model: nn.Module, adapters: dict[str, nn.Module]) -> None:
    """Put each adapted linear's frozen base layer back in its place: the plain Hugging Face model."""
    for name, layer in adapters.items():
        parent_name, _, child = name.rpartition(".")
        setattr(language_model.get_submodule(parent_name), child, layer.base)


def export_peft(backbone: Backbone, method: ContinualMethod, out: Path) -> Path:
    """Write the peft adapter folder; the backbone's model becomes the plain base model wrapped by
    peft with that adapter."""
    updates = low_rank_updates(method, "peft")
    unwrap_adapters(backbone.language_model, method.adapters)
    write_peft_adapters(backbone, {"default": updates}, out,
                        modules_to_save=[backbone.family.projector_path.rpartition(".")[2]] if method.train_projector else None)
    backbone.template.save(out)  # the conversation the adapter was trained in
    return out


def export_merged(backbone: Backbone, method: ContinualMethod, out: Path, rebuild: dict | None = None) -> Path:
    """Fold every update that has one low-rank form into its W and write the llava-hf checkpoint;
    the backbone's model becomes that merged model. A method that keeps layers apart
    (`writes_unmerged_layers`) writes them beside it, with `EXPORT_FILE`: `rebuild` (the method's
    config, the task names and trained tasks, the prompt settings) plus what the method adds."""
    updates = low_rank_updates(method, "merged")
    with torch.no_grad():
        for name, update in updates.items():
            if update is not None:
                A, B, s = update
                weight = method.adapters[name].base.weight
                weight.copy_((weight.float() + s * (B.float() @ A.float())).to(weight.dtype))
    unwrap_adapters(backbone.language_model, method.adapters)
    backbone.model.save_pretrained(out)
    backbone.tokenizer.save_pretrained(out)
    backbone.image_processor.save_pretrained(out)
    backbone.template.save(out)  # the conversation the model was trained with goes with it
    unmerged = [name for name, update in updates.items() if update is None]
    if unmerged:
        from hide.trained import EXPERTS_DIR, EXPORT_FILE, METHOD_STATE

        if rebuild is None:
            raise ConfigError(f"method {method.name} keeps layers apart in a merged export: give the run's settings")
        folders = {t: expert_folder(rebuild["tasks"][t]) for t in rebuild["trained"]}
        experts = {folders[t]: {n: (method.adapters[n].lora_A[t].detach(), method.adapters[n].lora_B[t].detach(),
                                  method.adapters[n].scale) for n in unmerged} for t in rebuild["trained"]}
        write_peft_adapters(backbone, experts, out / EXPERTS_DIR)
        torch.save(method.state_dict(), out / METHOD_STATE)
        settings = OmegaConf.merge(rebuild["method"], method.export_settings(backbone))
        rebuild = {**rebuild, "method": OmegaConf.to_container(settings), "unmerged": unmerged,
                   "experts": {str(t): folder for t, folder in folders.items()}}
        (out / EXPORT_FILE).write_text(json.dumps(rebuild, indent=2))
    return out


def expert_folder(task_name: str) -> str:
    """A task's name as a peft adapter name and folder (no dots, no path separators)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", task_name)


def export_run(run_dir, fmt: str, out, stage: int | None = None) -> Path:
    """Export the model of `stage` (default: the last, which the run must have reached) of the
    finished run in `run_dir` as `fmt` into `out`."""
    from hide.trained import load_run

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}; choose one of {FORMATS}")
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty folder: give a new one")
    model = load_run(run_dir, stage)
    if model.run is None:
        raise ConfigError(f"{run_dir} is an export, not a run directory: export from the run's own directory")
    total = len(model.run.tasks)
    if stage is None and model.stage < total:
        raise CheckpointError(f"{model.run_dir} is unfinished (stages 0..{model.stage} of {total} done): finish it "
                              f"(python train.py ... resume={model.run_dir}) or export a finished stage with --stage")
    run = model.run
    backbone, method = run.backbone, run.method
    if fmt == "peft":
        export_peft(backbone, method, out)
    else:
        rebuild = {"method": OmegaConf.to_container(run.cfg.method, resolve=True), "tasks": run.task_names,
                   "trained": model.trained, "stage": model.stage, "dtype": str(backbone.model.dtype).removeprefix("torch."),
                   "max_new_tokens": run.module.max_new_tokens, "max_length": run.datamodule.encoder.max_length,
                   "eval_batch_size": run.datamodule.eval_batch_size,
                   "trainer": {k: v for k, v in OmegaConf.to_container(run.cfg.trainer, resolve=True).items()
                               if k != "callbacks"}}
        export_merged(backbone, method, out, rebuild)
    print(f"{method.name}, stage {model.stage} of {model.run_dir}: {fmt} export in {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stage", type=int, default=None, help="the stage's model (default: the last)")
    args = parser.parse_args(argv)
    return exit_status(export_run, args.run_dir, args.format, args.out, args.stage)


if __name__ == "__main__":
    sys.exit(main())
