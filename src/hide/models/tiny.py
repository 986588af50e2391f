"""The tiny offline LLaVA (`model=tiny`): built from a config, pretrained on a generic synthetic
mixture of conversations (`hide.data.synth.mixture`; not any continual task, as LLaVA-1.5 had its
own pretraining and instruction tuning before continual tuning), saved with `save_pretrained` to a cache directory keyed by its
config, and from then on loaded with `from_pretrained` like any llava-hf checkpoint.

Two phases, each deterministic by seed and shown with a progress bar:
1. `pretrain_vision`: the ViT answers the mixture's questions, names what each layout cell
   holds and gives its image's object counts, through throw-away heads (the role CLIP
   pretraining plays for LLaVA's vision tower);
2. `pretrain_language`: projector and language model are instruction-tuned on the same conversations
   with the vision tower frozen, as in LLaVA-1.5.

A random-init model cannot learn the tasks through LoRA alone: pretraining is what gives its vision
tower the shapes, colours, bars and counts that the tasks ask about.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as transformers_logging

from hide.cache import build_once
from hide.data import synth
from hide.data.collate import Encoder, TrainCollator
from hide.data.formats import IMAGE_TOKEN, TrainRecord, load_train_file
from hide.models.backbone import Backbone, load_pretrained_backbone
from hide.models.family import family_named, model_inputs
from hide.models.llava import TINY_V1
from hide.module import cosine_with_warmup
from hide.modes import model_mode

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", IMAGE_TOKEN]
WORD_PATTERN = r"\w+|[^\w\s]"
# Bump when the tokenizer, the pretraining mixture or the training recipe changes meaning,
# so that stale cached models are not reused.
RECIPE_VERSION = 4
# Built backbones that ship with the repository (the default config's), one folder per cache key.
SHIPPED_DIR = Path(__file__).resolve().parents[3] / "assets" / "models"
MAX_COUNT = 9  # counts above are pretrained as 9


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A lowercase word-level tokenizer over the synthetic benchmark's vocabulary and the prompt."""
    return word_level_tokenizer(SPECIAL_TOKENS, TINY_V1.generation_prompt("", image=False), bos_token="<s>",
                                eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                extra_special_tokens={"image_token": IMAGE_TOKEN})


def word_level_tokenizer(special_tokens: list[str], prompt: str, **names) -> PreTrainedTokenizerFast:
    """A lowercase word-level tokenizer: `special_tokens` first (whole, never split), then the words
    of the synthetic benchmark, of a template's `prompt` and every digit and letter. `names`:
    PreTrainedTokenizerFast's special-token arguments (unk_token among them)."""
    words = set(synth.vocabulary())
    words.update(re.findall(WORD_PATTERN, prompt.lower()))
    words.update("0123456789abcdefghijklmnopqrstuvwxyz")
    words = sorted(w.lower() for w in words)
    vocab = {token: i for i, token in enumerate(special_tokens)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=names["unk_token"]))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")]
    )
    return PreTrainedTokenizerFast(tokenizer_object=core, padding_side="left", **names)


def build_model(tokenizer, image_size: int, patch_size: int, vision: dict, text: dict) -> LlavaForConditionalGeneration:
    """A random-init LLaVA: CLIP-style vision tower, 2-layer MLP projector, LLaMA-style decoder."""
    vision_config = CLIPVisionConfig(image_size=image_size, patch_size=patch_size, **vision)
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        **text,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    return LlavaForConditionalGeneration(config)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )


def _optimizer_step(loss, params, optimizer, scheduler, losses: list[float], bar, job, stage: str, total: int,
                    window: int = 20) -> None:
    """One clipped AdamW step of a pretraining stage; records the loss and shows the mean of the
    last `window` on the bar, and every tenth of the stage in the log (where no bar is drawn)."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    losses.append(loss.item())
    recent = sum(losses[-window:]) / len(losses[-window:])
    bar.update(job, advance=1, info=f"loss {recent:.3f}")
    if len(losses) % max(1, total // 10) == 0:
        log.info("%s step %d/%d: loss %.3f", stage, len(losses), total, recent)


def _word_ids(backbone: Backbone) -> torch.Tensor:
    """The token ids of every word a repeat turn draws from (the vocabulary's lowercase words)."""
    return torch.tensor(backbone.tokenizer.convert_tokens_to_ids(list(synth.mixture.repeat_vocabulary())))


def _repeated_words(backbone: Backbone, words: torch.Tensor, batch_size: int, length: int,
                    generator: torch.Generator) -> torch.Tensor:
    """A batch of token ids: <s>, then `length` random ones of `words`, then the same words again."""
    half = words[torch.randint(len(words), (batch_size, length), generator=generator)]
    return torch.cat([torch.full((batch_size, 1), backbone.tokenizer.bos_token_id), half, half], dim=1)


@torch.no_grad()
def copy_accuracy(backbone: Backbone, sequences: int = 200, length: int = 8, seed: int = 0) -> float:
    """The share of a repeated sequence's second half that the language model predicts right
    from what came before (teacher forcing): 0 for a model that cannot copy from its context."""
    ids = _repeated_words(backbone, _word_ids(backbone), sequences, length, torch.Generator().manual_seed(seed))
    with model_mode(backbone.model, training=False):
        predicted = backbone.model(input_ids=ids).logits[:, length + 1:-1].argmax(-1)
    return (predicted == ids[:, length + 2:]).float().mean().item()


def pretrain_text(backbone: Backbone, steps: int, batch_size: int = 64, lr: float = 1e-3, length: tuple[int, int] = (4, 12),
                  warmup_ratio: float = 0.05, seed: int = 0, progress: bool = True) -> list[float]:
    """Text pretraining of the language model: next-token loss on every token of image-free
    sequences of random vocabulary words said twice ("lake red two . lake red two ."), the
    repetition from which a language model's text pretraining forms its copying heads. The
    mixture supervises answers only, one or a few tokens each, and from that alone this decoder
    never learns to copy from its prompt, so it can neither repeat a sentence nor find a named
    option's letter; returns the per-step losses."""
    model = backbone.model
    model.train()
    generator = torch.Generator().manual_seed(seed)
    words = _word_ids(backbone)
    params = list(model.get_decoder().parameters()) + list(model.lm_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(steps, warmup_ratio))
    losses: list[float] = []
    with _progress() as bar:
        job = bar.add_task("text pretraining", total=steps, info="", visible=progress)
        for _ in range(steps):
            n = int(torch.randint(length[0], length[1] + 1, (1,), generator=generator))
            ids = _repeated_words(backbone, words, batch_size, n, generator)
            _optimizer_step(model(input_ids=ids, labels=ids).loss, params, optimizer, scheduler, losses,
                            bar, job, "text pretraining", steps)
    model.eval()
    return losses


def pretrain_language(backbone: Backbone, records: list[TrainRecord], epochs: int, batch_size: int, lr: float,
                      warmup_ratio: float, weight_decay: float, seed: int, train_vision: bool = False,
                      progress: bool = True) -> list[float]:
    """Instruction tuning of projector and language model (and the vision tower if `train_vision`;
    LLaVA-1.5 keeps it frozen) on the pretraining mixture; returns the per-step losses."""
    encoder = Encoder.for_backbone(backbone)
    collate = TrainCollator(encoder)
    model = backbone.model
    model.train()
    backbone.vision_tower.requires_grad_(train_vision)
    trainable = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        [(0, r) for r in records], batch_size=batch_size, shuffle=True, generator=generator,
        collate_fn=collate, drop_last=True,
    )
    total = epochs * len(loader)
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, warmup_ratio))
    losses: list[float] = []
    with _progress() as bar:
        job = bar.add_task("language pretraining", total=total, info="", visible=progress)
        for _ in range(epochs):
            for batch in loader:
                out = model(**model_inputs(model, batch), labels=batch["labels"])
                _optimizer_step(out.loss, trainable, optimizer, scheduler, losses, bar, job,
                                "language pretraining", total)
    model.requires_grad_(True)
    model.eval()
    return losses


class _QuestionPooledHead(torch.nn.Module):
    """Answers a mixture question from the vision tower's patch features: the question's embedding
    attends over the patches, and an MLP classifies over every answer string seen in the mixture."""

    def __init__(self, hidden: int, num_questions: int, num_answers: int):
        super().__init__()
        self.question = torch.nn.Embedding(num_questions, hidden)
        self.attend = torch.nn.MultiheadAttention(hidden, 4, batch_first=True)
        self.classify = torch.nn.Sequential(torch.nn.Linear(2 * hidden, 2 * hidden), torch.nn.GELU(),
                                            torch.nn.Linear(2 * hidden, num_answers))

    def forward(self, patches: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        query = self.question(questions).unsqueeze(1)
        pooled, _ = self.attend(query, patches, patches)
        return self.classify(torch.cat([pooled.squeeze(1), query.squeeze(1)], dim=-1))


def _patch_cells(grid: int, patches_per_side: int) -> torch.Tensor:
    """For each patch (row-major), the index of the layout-grid cell that holds it."""
    rows = torch.arange(patches_per_side).repeat_interleave(patches_per_side) * grid // patches_per_side
    cols = torch.arange(patches_per_side).repeat(patches_per_side) * grid // patches_per_side
    return rows * grid + cols


def pretrain_vision(backbone: Backbone, records: list[TrainRecord], steps: int, batch_size: int, lr: float,
                    seed: int, progress: bool = True, cell_labels: list[list[str] | None] | None = None,
                    dense_weight: float = 1.0, counts: list[dict[str, int] | None] | None = None,
                    count_weight: float = 1.0) -> list[float]:
    """Supervised pretraining of the vision tower on the mixture's questions, answered by a small
    classifier head on its patch features, plus (given `cell_labels`, one list of 16 layout-grid
    cell labels or None per record) a dense loss: a linear head on every patch names what its
    cell holds; and (given `counts`, per record a dict of object counts or None) a counting loss:
    every patch token names each count of its image (0-9), so that any image token the language
    model attends to carries them. The heads are thrown away afterwards.

    A ViT trained from scratch only through the language model learns colours but hardly any
    shape or geometry in a CPU budget (measured: "What shape is this?" near chance); a direct
    classification signal on the same questions trains it several times faster per second, the
    role CLIP pretraining plays for LLaVA-1.5's vision tower. The dense labels give each patch
    token the identity of its own cell (measured: "What shape is this?" 65% -> 93%, Renditions
    trained alone 45 -> 91). Neither they nor the counts taught the language model to count one
    kind among several (stayed near 50%; docs/benchmark.md)."""
    import numpy as np
    from PIL import Image

    images = torch.from_numpy(np.stack([np.asarray(Image.open(r.image).convert("RGB")) for r in records]))
    images = images.permute(0, 3, 1, 2).contiguous()  # uint8, normalised per batch below
    triples = [(i, turn.instruction, turn.answer) for i, r in enumerate(records) for turn in r.turns]
    questions = {q: k for k, q in enumerate(sorted({q for _, q, _ in triples}))}
    answers = {a: k for k, a in enumerate(sorted({a for _, _, a in triples}))}
    image_index = torch.tensor([i for i, _, _ in triples])
    question_index = torch.tensor([questions[q] for _, q, _ in triples])
    answer_index = torch.tensor([answers[a] for _, _, a in triples])
    processor = backbone.image_processor
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)

    family, model = backbone.family, backbone.model
    vision = backbone.vision_tower
    hidden = family.pretraining_width(model)
    head = _QuestionPooledHead(hidden, len(questions), len(answers))
    modules = [vision, head]
    dense = None
    if cell_labels is not None:
        if len(cell_labels) != len(records):
            raise ValueError(f"cell_labels has {len(cell_labels)} entries for {len(records)} records")
        names = sorted({label for cells in cell_labels if cells for label in cells})
        ids = {name: k for k, name in enumerate(names)}
        grid = math.isqrt(len(next(c for c in cell_labels if c)))
        per_side = family.token_grid_side(model, images.shape[-1])
        cell_of_patch = _patch_cells(grid, per_side)
        cell_targets = torch.full((len(records), grid * grid), -100, dtype=torch.long)
        for i, cells in enumerate(cell_labels):
            if cells:
                cell_targets[i] = torch.tensor([ids[c] for c in cells])
        patch_targets = cell_targets[:, cell_of_patch]  # (records, patches)
        dense = torch.nn.Linear(hidden, len(names))
        modules.append(dense)
    count_head = None
    if counts is not None:
        if len(counts) != len(records):
            raise ValueError(f"counts has {len(counts)} entries for {len(records)} records")
        keys = sorted({k for c in counts if c for k in c})
        count_targets = torch.full((len(records), len(keys)), -100, dtype=torch.long)
        for i, c in enumerate(counts):
            for k, key in enumerate(keys):
                if c and key in c:
                    count_targets[i, k] = min(c[key], MAX_COUNT)
        count_head = torch.nn.Linear(hidden, len(keys) * (MAX_COUNT + 1))
        modules.append(count_head)
    params = [p for m in modules for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(seed)
    vision.train()
    losses: list[float] = []
    with _progress() as bar:
        job = bar.add_task("vision pretraining", total=steps, info="", visible=progress)
        for _ in range(steps):
            pick = torch.randint(0, len(triples), (batch_size,), generator=generator)
            pixels = (images[image_index[pick]].float() / 255.0 - mean) / std
            tokens, patches = family.pretraining_states(model, pixels)
            loss = torch.nn.functional.cross_entropy(head(tokens, question_index[pick]), answer_index[pick])
            if dense is not None:
                targets = patch_targets[image_index[pick]]
                if (targets >= 0).any():
                    logits = dense(patches)
                    loss = loss + dense_weight * torch.nn.functional.cross_entropy(
                        logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
            if count_head is not None:
                targets = count_targets[image_index[pick]]  # (batch, keys), the same for every patch
                if (targets >= 0).any():
                    logits = count_head(patches).view(*patches.shape[:2], targets.shape[1], MAX_COUNT + 1)
                    targets = targets[:, None, :].expand(-1, patches.shape[1], -1)
                    loss = loss + count_weight * torch.nn.functional.cross_entropy(
                        logits.reshape(-1, MAX_COUNT + 1), targets.reshape(-1), ignore_index=-100)
            _optimizer_step(loss, params, optimizer, scheduler, losses, bar, job, "vision pretraining", steps,
                            window=50)
    return losses


def tiny_cache_key(spec: dict) -> str:
    # the payload's field names stay as the shipped backbone's key was computed with: renaming a
    # setting must not orphan a backbone built by the same settings
    fields = {("stage0" if name == "language_pretrain" else name): value for name, value in spec.items()}
    # a setting at its no-op value stays out of the key, so backbones built before it existed keep theirs
    stage0 = fields.get("stage0")
    if stage0 is not None and not stage0.get("repeat_share"):
        fields["stage0"] = {k: v for k, v in stage0.items() if k != "repeat_share"}
    payload = json.dumps({**fields, "recipe": RECIPE_VERSION, "stage0_data": synth.MIXTURE_VERSION,
                          "vocab": synth.vocabulary()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _stage_is_on(stage: dict | None) -> bool:
    """Whether an optional pretraining stage runs: one of 0 steps (or none) is off, and then no part
    of the backbone's settings, its spec or its cache key."""
    return bool((stage or {}).get("steps"))


def backbone_settings(model_cfg) -> dict:
    """A composed config's `model` group as plain values, without where the backbone is kept and
    whether it reports progress: what the backbone is (with `_target_`, which builds it)."""
    model = OmegaConf.to_container(model_cfg, resolve=True)
    for key in ("cache_dir", "shipped_dir", "progress"):
        model.pop(key, None)
    if not _stage_is_on(model.get("text_pretrain")):
        model.pop("text_pretrain", None)
    return model


def tiny_spec(image_size: int = 64, patch_size: int = 8, vision: dict | None = None, text: dict | None = None,
              vision_pretrain: dict | None = None, text_pretrain: dict | None = None,
              language_pretrain: dict | None = None, seed: int = 0, family: str = "llava") -> dict:
    """Every setting a built tiny backbone depends on (its cache key hashes them); a text stage of
    0 steps is off and no part of it, and neither is the family when it is LLaVA, so backbones
    built before those settings existed keep their keys."""
    spec = {"image_size": image_size, "patch_size": patch_size, "vision": dict(vision or {}), "text": dict(text or {}),
            "vision_pretrain": dict(vision_pretrain or {}), "language_pretrain": dict(language_pretrain or {}),
            "seed": seed}
    if _stage_is_on(text_pretrain):
        spec["text_pretrain"] = dict(text_pretrain)
    if family != "llava":
        spec["family"] = family
    return spec


def _family(spec: dict):
    """The model family of a tiny spec (LLaVA when it names none)."""
    return family_named(spec.get("family", "llava"))


def _family_prefix(spec: dict) -> str:
    return _family(spec).tiny_name


def tiny_backbone_name(spec: dict) -> str:
    """The folder name of the backbone of `spec`, in the cache and among the shipped ones."""
    return f"{_family_prefix(spec)}-{tiny_cache_key(spec)}"


def shipped_root(shipped_dir: str | None) -> Path:
    """The folder of shipped backbones: `model.shipped_dir`, or the repository's assets/models/."""
    return Path(shipped_dir or SHIPPED_DIR).expanduser()


def tiny_backbone_dir(spec: dict, cache_dir: str, shipped_dir: str | None = None) -> Path:
    """Where the backbone of `spec` lives: the copy shipped with the repository when one was built
    by these settings and this recipe, else its place in the cache."""
    name = tiny_backbone_name(spec)
    shipped = shipped_root(shipped_dir) / name
    return shipped if (shipped / "build.json").exists() else Path(cache_dir).expanduser() / name


def load_tiny_backbone(cache_dir: str, progress: bool = True, shipped_dir: str | None = None, **settings) -> Backbone:
    """Load the tiny LLaVA of these settings (`tiny_spec`'s arguments): the shipped one, or from
    the cache, building it there (with its pretraining) on first use."""
    spec = tiny_spec(**settings)
    path = tiny_backbone_dir(spec, cache_dir, shipped_dir)

    def build():
        other = sorted(p.name for p in shipped_root(shipped_dir).glob(f"{_family_prefix(spec)}-*"))
        if other:
            log.info("The shipped backbone (%s) was built by other settings or another recipe than "
                     "this run's (%s): building it", ", ".join(other), path.name)
        _build_tiny(path, spec, progress)

    build_once(path, lambda: (path / "build.json").exists(), build)
    with _without_loading_bar():  # a few MB load in milliseconds: a bar would be noise
        # a tiny LLaVA built before its folder kept a template was taught TINY_V1
        return load_pretrained_backbone(str(path), dtype="float32", attn_implementation="sdpa",
                                        default_template=TINY_V1 if "family" not in spec else None)


@contextmanager
def _without_loading_bar():
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def new_tiny_llava(spec: dict) -> Backbone:
    """The untrained tiny LLaVA of `spec`."""
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, spec["image_size"], spec["patch_size"], spec["vision"], spec["text"])
    size = spec["image_size"]
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    return Backbone(model=model, tokenizer=tokenizer, image_processor=image_processor, name="tiny", template=TINY_V1)


def _build_tiny(path: Path, spec: dict, progress: bool) -> None:
    log.info("Building the %s backbone in %s (first use of this config)", _family_prefix(spec), path)
    torch.manual_seed(spec["seed"])
    backbone = _family(spec).new_tiny(spec)
    model, tokenizer, image_processor = backbone.model, backbone.tokenizer, backbone.image_processor
    size = spec["image_size"]
    language_pretrain = dict(spec["language_pretrain"])
    num_samples = language_pretrain.pop("num_samples", 6000)
    repeat_share = language_pretrain.pop("repeat_share", 0.0)
    data_dir = path.parent / (f"mixture-data-v{synth.MIXTURE_VERSION}-{num_samples}-{size}-{spec['seed']}"
                              + (f"-repeat{repeat_share}" if repeat_share else ""))
    synth.generate_mixture(data_dir, num_samples=num_samples, image_size=size, seed=spec["seed"],
                           progress=progress, repeat_share=repeat_share)
    train_file = data_dir / "instructions" / synth.MIXTURE / "train.json"
    records = load_train_file(train_file, data_dir / "datasets")
    vision_losses = []
    vision_pretrain = dict(spec["vision_pretrain"])
    if vision_pretrain.get("steps", 0) > 0:
        metas = [r["meta"] for r in json.loads(train_file.read_text())]
        cell_labels = [synth.mixture_cell_labels(m) for m in metas] if vision_pretrain.pop("dense", False) else None
        counts = [synth.mixture_counts(m) for m in metas] if vision_pretrain.pop("counts", False) else None
        # The answer classifier learns facts of the image: not options' letters (which depend on
        # the order of the options in the question) nor captions (thousands of one-off sentences).
        facts = [TrainRecord(r.id, r.image, [t for t in r.turns if synth.mixture.states_a_fact(t.instruction)])
                 for r in records]
        vision_losses = pretrain_vision(backbone, facts, seed=spec["seed"], progress=progress,
                                        cell_labels=cell_labels, counts=counts, **vision_pretrain)
    text_losses = (pretrain_text(backbone, seed=spec["seed"], progress=progress, **spec["text_pretrain"])
                   if _stage_is_on(spec.get("text_pretrain")) else [])
    losses = pretrain_language(backbone, records, seed=spec["seed"], progress=progress, **language_pretrain)
    # Write beside the final path and rename, so an interrupted build is never mistaken for a model.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    image_processor.save_pretrained(tmp)
    backbone.template.save(tmp)
    with open(tmp / "build.json", "w") as f:
        json.dump({"spec": spec, "vision_losses": vision_losses, "text_losses": text_losses, "losses": losses, "built_on": build_machine()}, f)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def build_machine() -> dict:
    """What a build's floating-point results depend on besides its settings: a rebuild on another
    CPU or another torch gives other weights (the build is deterministic on one machine only)."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name")) or cpu
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}


def main() -> None:
    """`python -m hide.models.tiny build [OVERRIDES ...] [--ship]`: build the tiny backbone of the
    configuration (the default one without overrides) into the cache, and with --ship copy it into
    the repository's assets/models/ in place of the shipped one (what the default run loads)."""
    import argparse

    from hide.config import compose_config

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--ship", action="store_true", help=f"copy the built backbone into {SHIPPED_DIR}")
    args, overrides = parser.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = compose_config(overrides, Path(tempfile.mkdtemp(prefix="tiny-build-")))
    model = backbone_settings(cfg.model)
    model.pop("_target_")
    spec = tiny_spec(**model)
    path = Path(cfg.model.cache_dir).expanduser() / tiny_backbone_name(spec)
    build_once(path, lambda: (path / "build.json").exists(), lambda: _build_tiny(path, spec, progress=True))
    print(f"built: {path}")
    if args.ship:
        target = shipped_root(cfg.model.get("shipped_dir"))
        for old in target.glob(f"{_family_prefix(spec)}-*"):
            shutil.rmtree(old)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(path, target / path.name)
        print(f"shipped: {target / path.name}")


if __name__ == "__main__":
    main()
