"""Shared fixtures: the real Hydra configs composed with overrides that make a run take seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from hide.config import CONF, ROOT, compose_config  # noqa: F401  (CONF, ROOT: used by tests)
# Built models and generated data for tests are cached beside the repo's own cache, keyed by
# their settings, so that a second test session skips the backbone's build.
TEST_CACHE = Path(os.environ.get("HIDE_TEST_CACHE", ROOT / ".cache" / "test"))

# The real code paths in seconds: conf/debug/fast.yaml (a tiny-tiny backbone, two small tasks).
FAST = [f"paths.cache_dir={TEST_CACHE}", "debug=fast"]


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


def capture_after(monkeypatch, cls, hook: str, record):
    """Wrap cls.hook (a method hook taking module and task_index first) so that
    record(self, module, task_index) runs after it."""
    original = getattr(cls, hook)

    def wrapped(self, module, task_index, *args):
        result = original(self, module, task_index, *args)
        record(self, module, task_index)
        return result

    monkeypatch.setattr(cls, hook, wrapped)
