"""benchmark=ucit reads the real UCIT layout (protocol.md) through the same loop; here on a
miniature tree with UCIT's folder and file names, written by the test."""

import pytest
from PIL import Image

from hide.data.formats import (DataFormatError, write_caption_references, write_test_file,
                               write_train_file)
from hide.loop import run_continual

TASKS = [("ImageNet-R", "train.json", "qa"), ("ArxivQA", "train_4w.json", "qa"), ("VizWiz", "train.json", "caption")]


def make_mini_ucit(root, n_train=6, n_test=4, refs_short_by=0):
    for t, (name, train_file, kind) in enumerate(TASKS):
        images = root / "datasets" / name
        images.mkdir(parents=True)
        for i in range(n_train + n_test):
            Image.new("RGB", (40, 30), (40 * t, 20 * i % 255, 100)).save(images / f"{i}.jpg")
        answer = (lambda i: f"a photo of thing {i}") if kind == "caption" else (lambda i: "A" if i % 2 else "B")
        instructions = root / "instructions" / name
        write_train_file(instructions / train_file, [
            {"id": f"{name}-{i}", "image": f"{name}/{i}.jpg",
             "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"},
                               {"from": "gpt", "value": answer(i)}]} for i in range(n_train)])
        tests = [{"question_id": f"{name}-t{i}", "image": f"{name}/{n_train + i}.jpg", "text": "What is shown?",
                  "answer": answer(i)} for i in range(n_test)]
        write_test_file(instructions / "test_3000.json", tests)
        if kind == "caption":
            kept = tests[: n_test - refs_short_by]
            write_caption_references(instructions / "val_coco_type_3000.json", [x["image"] for x in kept],
                                     [[x["answer"], "a thing"] for x in kept])


def test_ucit_layout_runs_end_to_end(fast_cfg, tmp_path):
    data = tmp_path / "ucit"
    make_mini_ucit(data)
    out = tmp_path / "run"
    metrics = run_continual(fast_cfg("benchmark=ucit", f"paths.data_dir={data}", "benchmark.num_tasks=3",
                                     "benchmark.max_new_tokens=4"), out)
    assert metrics["tasks"] == ["ImageNet-R", "ArxivQA", "VizWiz"]
    assert all(v is not None for row in metrics["matrix"] for v in row)


def test_ucit_reference_count_mismatch_names_both_counts(fast_cfg, tmp_path):
    data = tmp_path / "ucit"
    make_mini_ucit(data, refs_short_by=1)
    with pytest.raises(DataFormatError, match=r"(?s)3.*4|4.*3"):
        run_continual(fast_cfg("benchmark=ucit", f"paths.data_dir={data}", "benchmark.num_tasks=3"), tmp_path / "run")


def test_ucit_missing_root_is_explained(fast_cfg, tmp_path):
    with pytest.raises(DataFormatError, match="paths.data_dir"):
        run_continual(fast_cfg("benchmark=ucit", f"paths.data_dir={tmp_path / 'nowhere'}"), tmp_path / "run")
