"""Shared fixtures: the real Hydra configs composed with overrides that make a run take seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from hide.config import CONF, ROOT, compose_config  # noqa: F401  (CONF, ROOT: used by tests)
# Built models and generated data for tests are cached beside the repo's own cache, keyed by
# their settings, so that a second test session skips the stage-0 build.
TEST_CACHE = Path(os.environ.get("HIDE_TEST_CACHE", ROOT / ".cache" / "test"))

# A tiny-tiny backbone and two small tasks: the real code paths in seconds. Its language model
# starts from a wide init (std 0.2, not 0.02), which its short stage 0 leaves confident and
# varied: answers differ from prompt to prompt and change with a few steps of training, so that
# comparisons of answers can fail (tests/test_fast_backbone.py guards this).
FAST = [
    f"paths.cache_dir={TEST_CACHE}",
    "model.image_size=32",
    "model.vision.hidden_size=32",
    "model.vision.intermediate_size=64",
    "model.vision.num_hidden_layers=1",
    "model.vision.num_attention_heads=2",
    "model.text.hidden_size=64",
    "model.text.intermediate_size=128",
    "model.text.num_hidden_layers=2",
    "model.text.num_attention_heads=2",
    "model.text.num_key_value_heads=2",
    "+model.text.initializer_range=0.2",
    "model.stage0.num_samples=64",
    "model.stage0.batch_size=16",
    "model.vision_pretrain.steps=10",
    "model.vision_pretrain.batch_size=16",
    "model.progress=false",
    "benchmark.num_tasks=2",
    "benchmark.train_per_task=16",
    "benchmark.test_per_task=8",
    "benchmark.max_new_tokens=8",
    "data.batch_size=8",
    "data.eval_batch_size=8",
    "trainer.max_epochs=3",  # two optimizer steps per epoch: the tests need steps and epoch boundaries
    "optim.lr=1.5e-3",  # learns something in 6 steps, yet three tasks in a row leave answers varied
    "trainer.enable_progress_bar=false",
    "trainer.callbacks=[]",
    "trainer.log_every_n_steps=1",
]


@pytest.fixture
def fast_cfg(tmp_path):
    def make(*overrides: str):
        return compose_config(FAST + list(overrides), tmp_path)

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
    """The fast test backbone, built once (cached on disk across sessions) and loaded with from_pretrained."""
    from hydra.utils import instantiate

    cfg = compose_config(FAST, tmp_path_factory.mktemp("backbone"))
    backbone = instantiate(cfg.model)
    GlobalHydra.instance().clear()
    return backbone
