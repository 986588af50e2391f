"""benchmark=ucit reads the real UCIT layout (protocol.md) through the same loop; here on a
miniature tree with UCIT's folder and file names, written by the test: the folder names of
HiDe-LLaVA's scripts and the records as its released files hold them (`official=True`), or its
README's folder names."""

import pytest
from PIL import Image

from hide.data.formats import (DataFormatError, write_caption_references, write_test_file,
                               write_train_file)
from hide.loop import run_continual

TASKS = [("ImageNet-R", "train.json", "qa"), ("ArxivQA", "train_4w.json", "qa"), ("VizWiz", "train.json", "caption")]
# HiDe-LLaVA's scripts/HiDe/Eval_UCIT/eval_vizwiz.sh reads /your_path/VizWiz-caption/test_3000.json
OFFICIAL_DIRS = {"VizWiz": "VizWiz-caption"}


def make_mini_ucit(root, n_train=6, n_test=4, refs_short_by=0, official=False):
    """With `official`: the scripts' folder names, training records without `id`, caption test
    records without `answer`, and a question id that repeats in each QA test file."""
    for t, (name, train_file, kind) in enumerate(TASKS):
        images = root / "datasets" / name
        images.mkdir(parents=True)
        for i in range(n_train + n_test):
            Image.new("RGB", (40, 30), (40 * t, 20 * i % 255, 100)).save(images / f"{i}.jpg")
        answer = (lambda i: f"a photo of thing {i}") if kind == "caption" else (lambda i: "A" if i % 2 else "B")
        instructions = root / "instructions" / (OFFICIAL_DIRS.get(name, name) if official else name)
        write_train_file(instructions / train_file, [
            {**({} if official else {"id": f"{name}-{i}"}), "image": f"{name}/{i}.jpg",
             "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"},
                               {"from": "gpt", "value": answer(i)}]} for i in range(n_train)])
        tests = [{"question_id": f"{name}-t{i}", "image": f"{name}/{n_train + i}.jpg", "text": "What is shown?",
                  "answer": answer(i)} for i in range(n_test)]
        if official and kind == "qa":
            tests[-1]["question_id"] = tests[0]["question_id"]
        written = [{k: v for k, v in x.items() if not (official and kind == "caption" and k == "answer")}
                   for x in tests]
        write_test_file(instructions / "test_3000.json", written)
        if kind == "caption":
            kept = tests[: n_test - refs_short_by]
            write_caption_references(instructions / "val_coco_type_3000.json", [x["image"] for x in kept],
                                     [[x["answer"], "a thing"] for x in kept])


def test_ucit_layout_runs_end_to_end(fast_cfg, tmp_path):
    """The official layout and records load as released and run through the whole loop."""
    data = tmp_path / "ucit"
    make_mini_ucit(data, official=True)
    out = tmp_path / "run"
    metrics = run_continual(fast_cfg("benchmark=ucit", f"paths.data_dir={data}", "benchmark.num_tasks=3",
                                     "benchmark.max_new_tokens=4"), out)
    assert metrics["tasks"] == ["ImageNet-R", "ArxivQA", "VizWiz"]
    assert all(v is not None for row in metrics["matrix"] for v in row)


def test_ucit_reference_count_mismatch_names_both_counts(fast_cfg, tmp_path):
    data = tmp_path / "ucit"
    make_mini_ucit(data, refs_short_by=1)
    instructions = data / "instructions" / "VizWiz"
    expected = (f"The caption reference file {instructions / 'val_coco_type_3000.json'} has 3 images but the test "
                f"file {instructions / 'test_3000.json'} has 4 records; references are matched to test records by "
                f"position, so the counts must be equal. Use the reference file that belongs to this test file.")
    with pytest.raises(DataFormatError) as info:
        run_continual(fast_cfg("benchmark=ucit", f"paths.data_dir={data}", "benchmark.num_tasks=3"), tmp_path / "run")
    assert str(info.value) == expected


def test_ucit_missing_root_is_explained(fast_cfg, tmp_path):
    with pytest.raises(DataFormatError, match="paths.data_dir"):
        run_continual(fast_cfg("benchmark=ucit", f"paths.data_dir={tmp_path / 'nowhere'}"), tmp_path / "run")


def test_data_check_finds_every_planted_fault_in_one_pass(tmp_path, capsys):
    import json

    from hide.data.check import main

    data = tmp_path / "ucit"
    make_mini_ucit(data, n_train=6, n_test=3)  # test_3000.json holding 3: a count mismatch per task
    (data / "datasets" / "ImageNet-R" / "1.jpg").unlink()  # a train image
    (data / "datasets" / "ImageNet-R" / "7.jpg").unlink()  # a test image
    arxiv = data / "instructions" / "ArxivQA" / "train_4w.json"
    records = json.loads(arxiv.read_text())
    del records[2]["conversations"]  # wrong schema
    arxiv.write_text(json.dumps(records))
    (data / "instructions" / "VizWiz" / "val_coco_type_3000.json").unlink()  # a missing file
    code = main([f"paths.data_dir={data}", "benchmark.num_tasks=4"])
    out = capsys.readouterr().out
    assert code == 1
    assert "2 image(s) missing" in out and "ImageNet-R/1.jpg" in out and "ImageNet-R/7.jpg" in out
    assert "conversations" in out and "train_4w.json" in out
    assert "val_coco_type_3000.json does not exist" in out
    assert out.count("holds 3 records, its name says 3000") == 3
    assert "instructions/IconQA does not exist" in out  # the 4th task was never written
    # a clean tree (counts aside) passes the other checks
    clean = tmp_path / "clean"
    make_mini_ucit(clean)
    main([f"paths.data_dir={clean}", "benchmark.num_tasks=3"])
    out = capsys.readouterr().out
    assert "missing" not in out.replace("missing images", "") and "does not exist" not in out
    assert main([f"paths.data_dir={tmp_path / 'nowhere'}"]) == 1
    assert "paths.data_dir" in capsys.readouterr().out


def test_official_records_load_and_the_data_check_names_what_is_not_plain(tmp_path, capsys):
    from hide.data.check import main
    from hide.data.datamodule import Benchmark
    from hide.config import compose_config
    from hydra.utils import instantiate

    data = tmp_path / "ucit"
    make_mini_ucit(data, official=True)
    cfg = compose_config(["benchmark=ucit", f"paths.data_dir={data}", "benchmark.num_tasks=3"], str(tmp_path / "out"))
    benchmark: Benchmark = instantiate(cfg.benchmark)
    tasks = benchmark.load()
    imagenet, _, vizwiz = tasks
    assert [r.id for r in imagenet.train] == [f"#{i}" for i in range(6)]  # named by index
    # every test record is kept: the repeated id gets a name of its own and keeps the file's id
    assert [r.question_id for r in imagenet.test] == ["ImageNet-R-t0", "ImageNet-R-t1", "ImageNet-R-t2",
                                                      "ImageNet-R-t0#3"]
    assert imagenet.test[3].source_id == "ImageNet-R-t0"
    assert [r.answer for r in vizwiz.test] == [""] * 4 and len(vizwiz.references) == 4
    main([f"paths.data_dir={data}", "benchmark.num_tasks=3"])
    out = capsys.readouterr().out
    assert out.count("1 question id(s) repeat ('ImageNet-R-t0' at records 0, 3)") == 1
    assert "1 question id(s) repeat ('ArxivQA-t0' at records 0, 3)" in out
    assert f"{data / 'instructions' / 'VizWiz-caption' / 'test_3000.json'}" in out  # the scripts' folder is read


def test_names_made_for_repeated_and_missing_ids_never_collide(tmp_path):
    """A repeated id's record is named "<id>#<index>", a training record without id "#<index>";
    where a file already uses that name, another "#" makes it unique, so no answer overwrites another."""
    from hide.data.formats import load_test_file, load_train_file

    (tmp_path / "a.jpg").parent.mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    tests = [{"question_id": q, "image": "a.jpg", "text": "?", "answer": "x"} for q in ("a", "a", "a#1")]
    write_test_file(tmp_path / "test.json", tests)
    records = load_test_file(tmp_path / "test.json", tmp_path, repeats={})
    assert [r.question_id for r in records] == ["a", "a#1", "a#1#2"]
    assert [r.source_id for r in records] == [None, "a", "a#1"]
    turns = [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "x"}]
    write_train_file(tmp_path / "train.json", [{"id": "#1", "image": "a.jpg", "conversations": turns},
                                              {"image": "a.jpg", "conversations": turns}])
    assert [r.id for r in load_train_file(tmp_path / "train.json", tmp_path)] == ["#1", "#1#"]
