"""HiDe's routing: per-task anchors (exact feature means), the encoders that give the features, and
the per-sample routing weights.

    sim_t = w_img cos(f_img, a_img_t) + w_txt cos(f_txt, a_txt_t)     over the trained tasks t
    w     = softmax(sim / temperature)                                  (optionally top-k)

Anchors are kept as fp32 sums and int64 counts, never as running means in the model's dtype (the
published code's bf16 count stops growing at a few thousand samples), and are summed across
data-parallel ranks, so that each anchor is the exact mean over its task's whole training set.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from hide.distributed import global_rank, world_size
from hide.errors import ConfigError
from hide.models.lora import adapters_disabled


class AnchorBank:
    """Per-task sums of image and text features and their counts: fp32 and int64 whatever the
    model's dtype (`to` moves them between devices and never casts them), saved with the method's
    state (`state_dict`), not with the model's weights."""

    def __init__(self, num_tasks: int, image_dim: int, text_dim: int):
        self.image_sum = torch.zeros(num_tasks, image_dim, dtype=torch.float32)
        self.text_sum = torch.zeros(num_tasks, text_dim, dtype=torch.float32)
        self.count = torch.zeros(num_tasks, dtype=torch.int64)

    def to(self, *args, **kwargs) -> "AnchorBank":
        """Move to the device among the arguments (a dtype among them is ignored: exact sums
        need fp32 and the counts int64)."""
        device = next((a for a in [*args, kwargs.get("device")] if isinstance(a, (str, torch.device))), None)
        if device is not None:
            self.image_sum, self.text_sum, self.count = (t.to(device) for t in (self.image_sum, self.text_sum, self.count))
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"image_sum": self.image_sum.clone(), "text_sum": self.text_sum.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("image_sum", "text_sum", "count"):
            setattr(self, name, state[name].to(getattr(self, name)))

    @torch.no_grad()
    def add(self, task: int, image_features: torch.Tensor, text_features: torch.Tensor) -> None:
        """Add a batch of features (one row per sample) to task's sums."""
        self.add_sums(task, image_features.float().sum(0), text_features.float().sum(0), image_features.shape[0])

    @torch.no_grad()
    def add_sums(self, task: int, image_sum: torch.Tensor, text_sum: torch.Tensor, count: int) -> None:
        self.image_sum[task] += image_sum.to(self.image_sum)
        self.text_sum[task] += text_sum.to(self.text_sum)
        self.count[task] += int(count)

    def means(self, tasks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(len(tasks), image_dim) and (len(tasks), text_dim) fp32 anchors."""
        empty = [t for t in tasks if int(self.count[t]) == 0]
        if empty:
            raise RuntimeError(f"No anchors for task(s) {empty}: their training sets were never encoded "
                               f"(HiDe computes anchors in on_task_end)")
        counts = self.count[tasks].to(torch.float64).unsqueeze(1)
        return ((self.image_sum[tasks].double() / counts).float(), (self.text_sum[tasks].double() / counts).float())

    def similarity(self, image_features: torch.Tensor, text_features: torch.Tensor, tasks: list[int],
                   image_weight: float = 0.5, text_weight: float = 0.5) -> torch.Tensor:
        """(batch, len(tasks)): weighted cosine similarities of each sample to each task's anchors."""
        image_anchor, text_anchor = (a.to(image_features.device) for a in self.means(tasks))
        image_cos = F.normalize(image_features.float(), dim=-1) @ F.normalize(image_anchor, dim=-1).T
        text_cos = F.normalize(text_features.float(), dim=-1) @ F.normalize(text_anchor, dim=-1).T
        return image_weight * image_cos + text_weight * text_cos


def routing_weights(similarity: torch.Tensor, temperature: float = 0.1, top_k: int | None = None) -> torch.Tensor:
    """softmax(similarity / temperature) per row; with `top_k`, only the k most similar tasks keep
    weight (a softmax over those k) and the others get exactly 0."""
    logits = similarity / temperature
    if top_k is not None and top_k < similarity.shape[-1]:
        kept = logits.topk(top_k, dim=-1).indices
        mask = torch.full_like(logits, float("-inf")).scatter(-1, kept, 0.0)
        logits = logits + mask
    return torch.softmax(logits, dim=-1)


@torch.no_grad()
def encode_task_anchors(bank: AnchorBank, task: int, batches, encoder, device: torch.device | None = None) -> int:
    """Add task's anchors to `bank` from every batch of its training loader: each data-parallel rank
    encodes every world-th batch, and the sums and counts are all-reduced (on `device`, the
    model's: NCCL reduces CUDA tensors; default the bank's), so every rank ends with the same
    exact means. Returns the number of samples encoded (all ranks)."""
    rank, world = global_rank(), world_size()
    device = device or bank.image_sum.device
    image_sum = torch.zeros_like(bank.image_sum[task], device=device)
    text_sum = torch.zeros_like(bank.text_sum[task], device=device)
    count = torch.zeros((), dtype=torch.int64, device=device)
    for index, batch in enumerate(batches):
        if index % world != rank:
            continue
        image, text = encoder.encode(batch)
        image_sum += image.float().sum(0).to(device)
        text_sum += text.float().sum(0).to(device)
        count += image.shape[0]
    if world > 1:
        for tensor in (image_sum, text_sum, count):
            dist.all_reduce(tensor)
    bank.add_sums(task, image_sum, text_sum, int(count))
    return int(count)


class OwnTowersEncoder:
    """Anchor features from the backbone's own frozen towers (the tiny offline model; why these,
    measured: docs/method.md). Image: the mean patch feature of vision hidden state `image_layer`
    (None: the middle one). Text: the base language model's (adapters off) last-token state of
    the instruction alone, CLIP's pooled text output's analogue. `base_model`: a checkpoint whose
    language model gives it instead (a merged export's holds the fused updates)."""

    def __init__(self, backbone, image_layer: int | None = None, text_cache_mb: float = 64.0,
                 base_model: str | None = None):
        self.model, self.family = backbone.model, backbone.family  # the vision tower is the backbone's own
        self.language_model = backbone.language_model
        self.tokenizer = backbone.tokenizer
        if base_model is not None:
            from hide.models.backbone import load_pretrained_backbone

            dtype = str(backbone.model.dtype).removeprefix("torch.")
            self.language_model = load_pretrained_backbone(base_model, dtype=dtype).language_model.eval()
        layers, self.image_dim = self.family.vision_shape(self.model)
        self.image_layer = image_layer = math.ceil(layers / 2) if image_layer is None else image_layer
        if not -layers - 1 <= image_layer <= layers:
            raise ConfigError(f"method.anchor_encoder.image_layer={image_layer}: the vision tower has hidden states 0..{layers}")
        self.text_dim = backbone.language_model.config.hidden_size
        # The text feature is a forward of the whole language model, so within one evaluation
        # each instruction is encoded once (tasks often ask one question of every image). The
        # cache lives for one evaluation (`clear_cache` at its start): kept across stages, a
        # resumed run would recompute features in other batches and could differ in the last bits.
        self.text_cache: dict[str, torch.Tensor] = {}
        self.text_cache_entries = int(text_cache_mb * 2 ** 20 / (4 * self.text_dim))

    def clear_cache(self) -> None:
        self.text_cache.clear()

    @torch.no_grad()
    def encode(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        image = image_rows(batch, self.image_dim, lambda: self.family.pooled_vision_state(self.model, batch, self.image_layer))
        return image, self.text_features(list(batch["instructions"]), image.device)

    @torch.no_grad()
    def text_features(self, instructions: list[str], device) -> torch.Tensor:
        new = list(dict.fromkeys(i for i in instructions if i not in self.text_cache))
        # Sharded parameters (FSDP) need the same forwards on every rank: a rank with nothing new
        # encodes one instruction anyway.
        run = new or (instructions[:1] if world_size() > 1 else [])
        fresh = {}
        if run:
            if self.language_model.device != torch.device(device):  # a base model of its own: not moved with the module
                self.language_model.to(device)
            # left padding: the last column is every row's last token
            tokens = self.tokenizer(run, add_special_tokens=False, padding=True, padding_side="left",
                                    return_tensors="pt").to(device)
            mask = tokens["attention_mask"]
            with adapters_disabled(self.language_model):
                out = self.language_model(input_ids=tokens["input_ids"], attention_mask=mask,
                                          position_ids=self.family.text_positions(mask))
            fresh = dict(zip(run, out.last_hidden_state[:, -1].float()))
            for text in new:
                if len(self.text_cache) < self.text_cache_entries:
                    self.text_cache[text] = fresh[text]
        return torch.stack([self.text_cache[i] if i in self.text_cache else fresh[i] for i in instructions])


class ClipAnchorEncoder:
    """Anchor features from a separate CLIP model, as HiDe uses for LLaVA-1.5-7B: the projected
    image embedding (ViT-L/14-336: 768-d) and the text encoder's pooled output of the instruction
    only (77 tokens at most). `path` is a hub id or a local directory (CLIPModel + tokenizer)."""

    def __init__(self, backbone, path: str = "openai/clip-vit-large-patch14-336", dtype: str = "float32"):
        from transformers import AutoTokenizer, CLIPModel

        from hide.models.backbone import DTYPES

        local = Path(path).expanduser()
        source = str(local) if local.exists() else path
        try:
            self.model = CLIPModel.from_pretrained(source, dtype=DTYPES[dtype]).eval().requires_grad_(False)
            self.tokenizer = AutoTokenizer.from_pretrained(source)
        except OSError as err:
            raise OSError(f"Could not load the CLIP anchor encoder from {path!r}: {err}. Give a local "
                          f"directory (method.anchor_encoder.path) on a machine without the hub.") from err
        self.image_size = self.model.config.vision_config.image_size
        self.image_dim = self.model.config.projection_dim
        self.text_dim = self.model.config.text_config.hidden_size
        self.max_length = min(77, self.model.config.text_config.max_position_embeddings)

    @torch.no_grad()
    def encode(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        device = batch_device(batch)
        self.model.to(device)

        def clip_image():
            pixels = batch["pixel_values"]
            if pixels.shape[-1] != self.image_size:
                raise ValueError(f"The backbone's images are {pixels.shape[-1]} px but the CLIP anchor encoder "
                                 f"expects {self.image_size} px; use a CLIP of the backbone's resolution")
            image = self.model.get_image_features(pixel_values=pixels.to(self.model.dtype))
            if not isinstance(image, torch.Tensor):  # newer transformers return an output object
                image = image.pooler_output
            return image.float()

        image = image_rows(batch, self.image_dim, clip_image)
        tokens = self.tokenizer(list(batch["instructions"]), padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt").to(device)
        text = self.model.text_model(input_ids=tokens["input_ids"],
                                     attention_mask=tokens["attention_mask"]).pooler_output
        return image, text.float()


def batch_device(batch: dict) -> torch.device:
    """Where a batch's tensors are: its images', or its tokens' when it has no image."""
    pixels = batch["pixel_values"]
    return pixels.device if pixels is not None else batch["input_ids"].device


def image_rows(batch: dict, dim: int, features) -> torch.Tensor:
    """`features()` of a batch's images (one row per image), one row per record; a record without an image
    (a text-only question) gets a zero row, whose cosine similarity to every image anchor is 0,
    so routing it goes by its instruction alone."""
    rows = len(batch["instructions"])
    pixels = batch["pixel_values"]
    if pixels is None:
        return torch.zeros(rows, dim, device=batch_device(batch))
    image = features()
    mask = batch.get("has_image")
    if mask is None or bool(mask.all()):
        return image
    full = torch.zeros(rows, image.shape[1], dtype=image.dtype, device=image.device)
    full[mask.to(image.device)] = image
    return full
