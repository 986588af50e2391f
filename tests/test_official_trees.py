"""The official releases as they come, end to end: CoIN's eight tasks (string boxes, text-only
ScienceQA questions, the annotation files its scorers read) and the general-ability sets (MME
nested as its zip extracts, POPE, SEED-Bench), generated here in their exact formats, pass the
data check and run through `python train.py benchmark=coin eval.retention=[mme,pope,seed]` on the
fast test backbone with HiDe, the default method."""

import json
import subprocess
import sys

from conftest import FAST, ROOT
from test_coin import coin_benchmark, make_official_coin
from test_retention import make_mme, make_pope, make_seed

from hide.data.check import main as check_main


def test_coin_and_the_general_sets_run_from_their_official_files(tmp_path, capsys):
    coin = make_official_coin(tmp_path / "coin")
    general = tmp_path / "general"
    make_mme(general / "MME_Benchmark_release_version", nested=True)
    make_pope(general)
    make_seed(general)
    settings = ["benchmark=coin", f"paths.data_dir={coin}", "eval.retention=[mme,pope,seed]",
                f"paths.retention_dir={general}"]
    assert check_main([*FAST, *settings, "benchmark.num_tasks=null"]) == 0, capsys.readouterr().out
    checked = capsys.readouterr().out
    assert "all files present and valid" in checked
    assert "[ScienceQA] note: " in checked and "without an image, answered as text-only" in checked

    out = tmp_path / "run"
    # ScienceQA has text-only questions, ImageNet is cropped, Grounding answers boxes
    done = subprocess.run([sys.executable, "train.py", *FAST, *settings, "logger=none", f"hydra.run.dir={out}",
                           "benchmark.select=[ScienceQA,ImageNet,Grounding]", "benchmark.num_tasks=null"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tasks"] == ["ScienceQA", "ImageNet", "Grounding"]
    assert all(v is not None for row in metrics["matrix"] for v in row)
    assert set(metrics["retention"]) == {"MME", "POPE", "SEED"}
    for name, entry in metrics["retention"].items():
        assert {"base", "final"} <= set(entry), name
    answers = json.loads((out / "predictions" / "stage3.json").read_text())
    assert all(answers[name] for name in metrics["tasks"])  # every task answered, text-only questions too


def test_coin_tasks_are_evaluated_with_their_official_settings(tmp_path, tiny_backbone):
    """Each loaded task carries its official script's settings to the collator: ImageNet cropped
    with model_vqa.py's 1024 tokens, TextVQA padded with model_text_vqa.py's 128."""
    from hide.data.collate import Encoder, EvalCollator

    coin = make_official_coin(tmp_path / "coin")
    tasks = {t.name: t for t in coin_benchmark(coin, select=["TextVQA", "ImageNet"]).load()}
    encoder = Encoder.for_backbone(tiny_backbone)
    imagenet = EvalCollator.for_task(encoder, tasks["ImageNet"].spec)
    textvqa = EvalCollator.for_task(encoder, tasks["TextVQA"].spec)
    assert (imagenet.image_processing, imagenet.max_new_tokens) == ("crop", 1024)
    assert (textvqa.image_processing, textvqa.max_new_tokens) == ("pad", 128)
    record = tasks["ImageNet"].test[0]
    cropped, padded = (EvalCollator(encoder, image_processing=p)([(0, record)])["pixel_values"] for p in ("crop", "pad"))
    assert imagenet([(0, record)])["pixel_values"].equal(cropped) and not cropped.equal(padded)
    assert imagenet([(0, record)])["max_new_tokens"] == 1024
