"""Shared fixtures: the real Hydra configs composed with overrides that make a run take seconds."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Under pytest-xdist every worker (and every `train.py` it starts) computes on one thread: with
# torch's default of one thread per core, two workers' OpenMP threads spin against each other and
# the suite runs several times slower. Set before torch is imported; the user's own setting wins.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

from hide.config import CONF, ROOT, compose_config  # noqa: F401,E402  (CONF, ROOT: used by tests)
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


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """finished_run(dest, *overrides): a copy, in dest, of a finished fast run with those overrides.
    Each set of overrides trains once per test process; every test gets its own copy to read or
    break (the runs are deterministic, so a copy is the run the test would have trained)."""
    from hide.loop import run_continual

    trained: dict[tuple[str, ...], Path] = {}

    def copy_of(dest: Path, *overrides: str) -> Path:
        if overrides not in trained:
            run_dir = tmp_path_factory.mktemp("finished_run")
            run_continual(compose_config(FAST + list(overrides), run_dir), run_dir)
            GlobalHydra.instance().clear()
            trained[overrides] = run_dir
        shutil.copytree(trained[overrides], dest, dirs_exist_ok=True)
        return dest

    return copy_of


def capture_after(monkeypatch, cls, hook: str, record):
    """Wrap cls.hook (a method hook taking module and task_index first) so that
    record(self, module, task_index) runs after it."""
    original = getattr(cls, hook)

    def wrapped(self, module, task_index, *args):
        result = original(self, module, task_index, *args)
        record(self, module, task_index)
        return result

    monkeypatch.setattr(cls, hook, wrapped)


def hide_with_random_experts(backbone, num_tasks: int = 3):
    """HiDe (rank 4, no dropout) on `backbone`, its routed top layer's experts random and large
    enough to change the answers (the fused layers keep B = 0: only the routed mixture acts), every
    task trained; returns the method and the generator that drew them (seed 1), for the test's own
    further draws."""
    import torch

    from hide.methods.hide import HiDe

    method = HiDe(rank=4, dropout=0.0)
    method.attach(backbone, num_tasks=num_tasks)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for adapter in method.routed.values():
            for slot in range(num_tasks):
                adapter.lora_A[slot].normal_(0, 1.0, generator=generator)
                adapter.lora_B[slot].normal_(0, 1.0, generator=generator)
    method.on_eval_start(None, list(range(num_tasks)))
    return method, generator
