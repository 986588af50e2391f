"""experiments/mixture_overlap.py on the fast config's mixture and benchmark: every count of the
table, and a planted copy of a mixture image, question and caption found where it was put."""

import json
import shutil
import sys

from conftest import ROOT
from hydra.utils import instantiate

from hide.data.datamodule import Benchmark
from hide.data.formats import TaskData

sys.path.insert(0, str(ROOT / "experiments"))
import mixture_overlap  # noqa: E402

sys.path.pop(0)


def test_overlap_table_counts_what_the_mixture_shares(tmp_path, fast_cfg):
    cfg = fast_cfg("benchmark.num_tasks=3")  # two QA tasks and ObjectCaption
    table = mixture_overlap.overlaps(cfg)
    rows = {r["task"]: r for r in table["rows"]}
    benchmark = instantiate(cfg.benchmark)
    assert list(rows) == benchmark.task_names
    assert table["mixture"]["num_samples"] == cfg.model.language_pretrain.num_samples
    for row in rows.values():
        assert 0 <= row["images"] <= row["test_items"] and 0 <= row["questions"] <= row["test_items"]
    qa, caption = [r for r in rows.values() if r["kind"] == "qa"], [r for r in rows.values() if r["kind"] == "caption"]
    assert qa and all(0 <= r["answers"] <= r["test_items"] for r in qa)
    assert all(0 <= r["reference_4grams_in_mixture"] <= 100 for r in caption)

    # plant: a test image replaced by a mixture image, a test question by a mixture question (in
    # capitals), a caption reference that holds a mixture answer of four words or more
    mixture_dir = ROOT / mixture_overlap.mixture_dir_of(cfg)  # this version's, not an older one in the cache
    conversation = json.loads((mixture_dir / "instructions" / "Mixture" / "train.json").read_text())[0]
    index = mixture_overlap.mixture_index(mixture_dir)
    data = tmp_path / "copy"
    shutil.copytree(benchmark.data_dir, data)
    specs = {s.name: s for s in benchmark.specs}
    task, captioned = qa[0]["task"], caption[0]["task"]
    test_file = data / "instructions" / specs[task].dir / specs[task].test_file
    records = json.loads(test_file.read_text())
    was_identical = mixture_overlap.pixels_key(data / "datasets" / records[0]["image"]) in index["images"]
    shutil.copyfile(mixture_dir / "datasets" / conversation["image"], data / "datasets" / records[0]["image"])
    was_asked = records[1]["text"].strip().lower() in index["questions"]
    records[1]["text"] = conversation["conversations"][0]["value"].replace("<image>\n", "").upper()
    test_file.write_text(json.dumps(records))
    references_file = data / "instructions" / specs[captioned].dir / specs[captioned].references_file
    references = json.loads(references_file.read_text())
    first = references["images"][0]["id"]
    references["annotations"] = [{**a, "caption": f"look , {index['long_answers'][0]} here ."}
                                 if a["image_id"] == first else a for a in references["annotations"]]
    references_file.write_text(json.dumps(references))

    copied = Benchmark(str(data), [dict(s.__dict__) for s in benchmark.specs]).load()
    after = {t.name: mixture_overlap.task_overlap(t, index) for t in copied}
    assert after[task]["images"] == rows[task]["images"] + (0 if was_identical else 1)
    assert after[task]["questions"] == rows[task]["questions"] + (0 if was_asked else 1)
    planted = next(t for t in copied if t.name == captioned)
    record = next(r for r in planted.test if any(index["long_answers"][0] in ref for ref in planted.references[r.question_id]))
    alone = TaskData(captioned, "caption", [], [record], {record.question_id: planted.references[record.question_id]})
    assert mixture_overlap.task_overlap(alone, index)["captions_verbatim"] == 1
    markdown = mixture_overlap.markdown(table)
    assert all(f"| {name} |" in markdown for name in rows)


def test_the_docs_table_is_the_stored_run_files():
    """docs/benchmark.md shows docs/results/mixture_overlap.json as the script writes it."""
    table = json.loads((ROOT / "docs" / "results" / "mixture_overlap.json").read_text())
    assert mixture_overlap.markdown(table) == (ROOT / "docs" / "results" / "mixture_overlap.md").read_text()
    assert "<!-- table: mixture-overlap -->\n" + mixture_overlap.markdown(table) in (ROOT / "docs" / "benchmark.md").read_text()


def test_no_test_image_can_equal_a_mixture_image(tmp_path):
    """Test images and mixture images come from two halves of the image space (one bit of the
    pixels' digest), so none is identical to the other whatever the mixture's size or seed; on real
    data of every task, including IconQA's small space of grid scenes, where a drawn test image
    equals a mixture image often enough that 25,000 mixture scenes met 10 of 200."""
    from hide.data import synth
    from hide.data.formats import load_train_file
    from hide.data.synth.build import MIXTURE_HALF, TEST_HALF, image_half
    from PIL import Image

    root = synth.generate_benchmark(tmp_path / "bench", train_per_task=2, test_per_task=12, image_size=32,
                                    progress=False)
    synth.generate_mixture(tmp_path / "mix", num_samples=150, image_size=32, progress=False)
    test_images = sorted((root / "datasets").glob("*/test/*.png"))
    assert len(test_images) == 6 * 12
    with_half = lambda path: image_half(Image.open(path).convert("RGB"))  # noqa: E731
    assert {with_half(p) for p in test_images} == {TEST_HALF}
    mixture = load_train_file(tmp_path / "mix" / "instructions" / synth.MIXTURE / "train.json", tmp_path / "mix" / "datasets")
    assert {with_half(r.image) for r in mixture} == {MIXTURE_HALF}
    keys = {mixture_overlap.pixels_key(r.image) for r in mixture}
    assert not keys & {mixture_overlap.pixels_key(p) for p in test_images}
