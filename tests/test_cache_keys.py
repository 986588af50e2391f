"""Cache keys follow the content: a change to the generated data, the pretraining mixture or the build
recipe without a new version in the key fails here (hide.fingerprints)."""

import pytest

from hide import fingerprints
from hide.data import synth
from hide.models import tiny

VERSION_OF = {"benchmark": "hide.data.synth.build.GENERATOR_VERSION", "mixture": "hide.data.synth.build.MIXTURE_VERSION",
              "recipe": "hide.models.tiny.RECIPE_VERSION"}


@pytest.fixture(scope="module")
def today():
    return fingerprints.current()


@pytest.mark.parametrize("kind", ["benchmark", "mixture", "recipe"])
def test_each_fingerprint_matches_its_pinned_version(kind, today):
    pinned = fingerprints.pinned()[kind]
    assert pinned["version"] == today[kind]["version"], (
        f"{VERSION_OF[kind]} is {today[kind]['version']} but {fingerprints.PINNED.name} pins version "
        f"{pinned['version']}: run `python -m hide.fingerprints --update` to pin the new version's content")
    assert pinned["fingerprint"] == today[kind]["fingerprint"], (
        f"what {VERSION_OF[kind]} = {pinned['version']} produces has changed: caches keyed by it would be reused "
        f"stale. Bump {VERSION_OF[kind]} and run `python -m hide.fingerprints --update` (only `--update` if the "
        f"content is really the same)")


def test_the_fingerprints_see_a_change_of_content(monkeypatch):
    benchmark, mixture = fingerprints.benchmark_fingerprint(samples=1), fingerprints.mixture_fingerprint(samples=20)
    monkeypatch.setattr(synth.renditions, "RENDITION_SIZE", (0.5, 0.8))  # Renditions draws smaller objects
    assert fingerprints.benchmark_fingerprint(samples=1) != benchmark
    assert fingerprints.mixture_fingerprint(samples=20) != mixture  # the mixture draws the same single shapes
    monkeypatch.undo()
    monkeypatch.setattr(synth.mixture, "MIXTURE_TURNS", 2)
    assert fingerprints.mixture_fingerprint(samples=20) != mixture
    assert fingerprints.benchmark_fingerprint(samples=1) == benchmark


def _load(tmp_path, name: str, source: str):
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scale


def test_the_recipe_fingerprint_sees_code_not_wording(tmp_path):
    base = _load(tmp_path, "a", 'def scale(lr):\n    """Double it."""\n    return lr * 2\n')
    reworded = _load(tmp_path, "b", 'def scale(lr):\n    """Twice the rate."""\n    # doubled\n    return lr * 2\n')
    changed = _load(tmp_path, "c", 'def scale(lr):\n    """Double it."""\n    return lr * 3\n')
    assert fingerprints.code_fingerprint([base]) == fingerprints.code_fingerprint([reworded])
    assert fingerprints.code_fingerprint([base]) != fingerprints.code_fingerprint([changed])


def test_the_backbone_key_holds_the_versions(monkeypatch):
    spec = {"image_size": 32}
    key = tiny.tiny_cache_key(spec)
    monkeypatch.setattr(tiny, "RECIPE_VERSION", tiny.RECIPE_VERSION + 1)
    assert tiny.tiny_cache_key(spec) != key
    monkeypatch.undo()
    monkeypatch.setattr(synth, "MIXTURE_VERSION", synth.MIXTURE_VERSION + 1)
    assert tiny.tiny_cache_key(spec) != key


def test_a_repeat_share_of_zero_keeps_the_key_of_a_backbone_built_without_it():
    """Backbones built before the repeat share existed keep their keys; any share gets its own."""
    spec = tiny.tiny_spec(language_pretrain={"num_samples": 100})
    without = tiny.tiny_cache_key(spec)
    assert tiny.tiny_cache_key(tiny.tiny_spec(language_pretrain={"num_samples": 100, "repeat_share": 0.0})) == without
    assert tiny.tiny_cache_key(tiny.tiny_spec(language_pretrain={"num_samples": 100, "repeat_share": 0.2})) != without


def test_a_text_stage_of_zero_steps_keeps_the_key_of_a_backbone_built_without_it():
    """The text stage is off at 0 steps and then leaves the key alone; any number of steps gets its own."""
    without = tiny.tiny_cache_key(tiny.tiny_spec())
    assert tiny.tiny_cache_key(tiny.tiny_spec(text_pretrain={"steps": 0, "lr": 1e-3})) == without
    assert tiny.tiny_cache_key(tiny.tiny_spec(text_pretrain={"steps": 500, "lr": 1e-3})) != without
