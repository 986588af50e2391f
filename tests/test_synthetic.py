"""The synthetic six-task benchmark and the pretraining mixture: determinism, layout, idempotency,
closed vocabulary, answer formats and the answers' agreement with the generated scenes."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hide.data import synth as sy

N_TRAIN, N_TEST, SIZE = 12, 8, 32
TOKEN = re.compile(r"\w+|[^\w\s]")
QA_TASKS = [t["name"] for t in sy.SYNTH_TASKS if t["kind"] == "qa"]
CAPTION_TASKS = [t["name"] for t in sy.SYNTH_TASKS if t["kind"] == "caption"]


def _gen(root: Path, seed: int = 0, tasks=None) -> Path:
    return sy.generate_benchmark(root, train_per_task=N_TRAIN, test_per_task=N_TEST, image_size=SIZE,
                                 seed=seed, tasks=tasks, progress=False)


def _tree_digest(root: Path, under: str = "") -> dict[str, str]:
    """sha1 of every file below root/under (the marker excluded), keyed by relative path."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted((root / under).rglob("*")) if p.is_file() and p.name != sy.MARKER}


def _load(root: Path, task: str, name: str):
    return json.loads((root / "instructions" / task / name).read_text())


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return _gen(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="module")
def mixture(tmp_path_factory) -> Path:
    return sy.generate_mixture(tmp_path_factory.mktemp("mixture"), num_samples=40, image_size=SIZE, progress=False)


def test_task_list():
    assert [t["name"] for t in sy.SYNTH_TASKS] == [
        "Renditions", "FigureQA", "ObjectCaption", "IconQA", "ClevrMath", "SceneCaption"]
    for t in sy.SYNTH_TASKS:
        assert set(t) == {"name", "kind", "train_file", "test_file", "references_file"}
        assert (t["references_file"] is not None) == (t["kind"] == "caption")


def test_deterministic_by_seed(bench, tmp_path):
    again = _gen(tmp_path / "again")
    assert _tree_digest(again) == _tree_digest(bench)
    other = _gen(tmp_path / "other", seed=1)
    a, b = _tree_digest(bench), _tree_digest(other)
    assert a.keys() == b.keys()
    for task in sy.TASK_NAMES:  # every task's images and texts change with the seed
        assert a[f"instructions/{task}/train.json"] != b[f"instructions/{task}/train.json"]
        assert a[f"datasets/{task}/train/0.png"] != b[f"datasets/{task}/train/0.png"]


def test_subset_equals_full(bench, tmp_path):
    subset = _gen(tmp_path / "subset", tasks=["ClevrMath", "FigureQA"])
    assert sorted(p.name for p in (subset / "instructions").iterdir()) == ["ClevrMath", "FigureQA"]
    full = _tree_digest(bench)
    for path, digest in _tree_digest(subset).items():
        assert full[path] == digest, path


def test_layout_and_formats(bench):
    for spec in sy.SYNTH_TASKS:
        task = spec["name"]
        train, test = _load(bench, task, spec["train_file"]), _load(bench, task, spec["test_file"])
        assert len(train) == N_TRAIN and len(test) == N_TEST
        for r in train:
            assert set(r) == {"id", "image", "conversations", "meta"}
            assert r["image"].startswith(f"{task}/train/")
            conv = r["conversations"]
            assert [c["from"] for c in conv] == ["human", "gpt"] * (len(conv) // 2)
            assert conv[0]["value"].startswith("<image>\n") and conv[0]["value"].count("<image>") == 1
            assert all(c["value"].strip() == c["value"] or c is conv[0] for c in conv)
        for r in test:
            assert set(r) == {"question_id", "image", "text", "answer", "meta"}
            assert r["image"].startswith(f"{task}/test/") and "<image>" not in r["text"]
        for r in train + test:
            with Image.open(bench / "datasets" / r["image"]) as img:
                assert img.format == "PNG" and img.size == (SIZE, SIZE) and img.mode == "RGB"
        assert len({r["id"] for r in train}) == N_TRAIN and len({r["question_id"] for r in test}) == N_TEST
        if spec["kind"] == "caption":
            refs = _load(bench, task, spec["references_file"])
            assert [im["id"] for im in refs["images"]] == list(range(1, N_TEST + 1))
            assert [im["file_name"] for im in refs["images"]] == [r["image"] for r in test]
            per_image = {}
            for a in refs["annotations"]:
                per_image.setdefault(a["image_id"], []).append(a["caption"])
            assert sorted(per_image) == list(range(1, N_TEST + 1))
            assert all(len(c) == 3 and len(set(c)) == 3 for c in per_image.values())
            for r, (i, caps) in zip(test, sorted(per_image.items())):
                assert r["answer"] == caps[0]
            for r in train + [{"conversations": [{}, {"value": c}]} for c in sum(per_image.values(), [])]:
                cap = r["conversations"][1]["value"]
                assert cap == cap.lower() and not cap.endswith(".")
        else:
            assert not (bench / "instructions" / task / "test_coco_refs.json").exists()


def test_loaders_read_it(bench):
    formats = pytest.importorskip("hide.data.formats")
    if not hasattr(formats, "load_task"):
        pytest.skip("formats.load_task not available")
    for spec in sy.SYNTH_TASKS:
        data = formats.load_task(bench, formats.TaskSpec(**spec))
        assert len(data.train) == N_TRAIN and len(data.test) == N_TEST
        if spec["kind"] == "caption":
            assert all(len(v) == 3 for v in data.references.values())
        assert sy.chance_level(spec["name"], data.test) == sy.chance_level(
            spec["name"], _load(bench, spec["name"], "test.json"))


def test_no_test_image_in_train(bench):
    for task in sy.TASK_NAMES:
        digests = [_tree_digest(bench, f"datasets/{task}/{split}") for split in ("train", "test")]
        assert not set(digests[0].values()) & set(digests[1].values())


def test_marker_and_idempotency(tmp_path):
    root = _gen(tmp_path / "b")
    marker = json.loads((root / sy.MARKER).read_text())
    assert marker["benchmark"]["train_per_task"] == N_TRAIN and marker["benchmark"]["tasks"] == sy.TASK_NAMES
    files = [p for p in root.rglob("*") if p.is_file()]
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    _gen(root)
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    # the mixture in the same root keeps its own entry and leaves the benchmark's alone
    sy.generate_mixture(root, num_samples=5, image_size=SIZE, progress=False)
    assert set(json.loads((root / sy.MARKER).read_text())) == {"benchmark", "mixture"}
    marker_mtime = (root / sy.MARKER).stat().st_mtime_ns
    _gen(root)
    sy.generate_mixture(root, num_samples=5, image_size=SIZE, progress=False)
    assert (root / sy.MARKER).stat().st_mtime_ns == marker_mtime
    assert {p: p.stat().st_mtime_ns for p in files if p.name != sy.MARKER} == {
        p: t for p, t in mtimes.items() if p.name != sy.MARKER}
    # other parameters regenerate, leaving no stale files behind
    sy.generate_benchmark(root, train_per_task=3, test_per_task=2, image_size=SIZE, progress=False)
    assert json.loads((root / sy.MARKER).read_text())["benchmark"]["train_per_task"] == 3
    assert len(list((root / "datasets" / "IconQA" / "train").iterdir())) == 3
    assert len(_load(root, "IconQA", "train.json")) == 3
    # a marker of an interrupted run (parameters differ) is not trusted
    (root / sy.MARKER).write_text("{broken")
    sy.generate_benchmark(root, train_per_task=3, test_per_task=2, image_size=SIZE, progress=False)
    assert json.loads((root / sy.MARKER).read_text())["benchmark"]["test_per_task"] == 2


def _all_texts(root: Path, mixture_root: Path) -> list[str]:
    texts = []
    for spec in sy.SYNTH_TASKS:
        for r in _load(root, spec["name"], "train.json"):
            texts += [c["value"].replace("<image>", "") for c in r["conversations"]]
        for r in _load(root, spec["name"], "test.json"):
            texts += [r["text"], r["answer"]]
        if spec["references_file"]:
            texts += [a["caption"] for a in _load(root, spec["name"], spec["references_file"])["annotations"]]
    for r in _load(mixture_root, sy.MIXTURE, "train.json"):
        texts += [c["value"].replace("<image>", "") for c in r["conversations"]]
    return texts


def test_vocabulary_covers_generated_text(bench, mixture):
    vocab = sy.vocabulary()
    assert vocab == sorted(set(vocab)) and all(TOKEN.fullmatch(w) for w in vocab)
    words = set(vocab)
    for text in _all_texts(bench, mixture):
        assert set(TOKEN.findall(text)) <= words, (text, set(TOKEN.findall(text)) - words)
    # many more samples than the files hold, drawn small, to reach the rarer branches
    for task in sy.TASKS:
        name = task.NAME
        for i in range(150):
            _, text, answer, refs, _ = task.sample(sy.build.sample_rng(0, name, "train", i), 8)
            for t in [text, answer] + (refs or []):
                assert set(TOKEN.findall(t)) <= words, (name, t)
    for i in range(400):
        _, qa, _ = sy.mixture.sample(sy.build.sample_rng(0, sy.MIXTURE_STREAM, "train", i), 8)
        for q, a in qa:
            assert set(TOKEN.findall(q + " " + a)) <= words, (q, a)


def test_answers_agree_with_scenes(bench):
    for task in QA_TASKS:
        for split, file in (("train", "train.json"), ("test", "test.json")):
            for r in _load(bench, task, file):
                if split == "train":
                    text, answer = r["conversations"][0]["value"], r["conversations"][1]["value"]
                else:
                    text, answer = r["text"], r["answer"]
                m = r["meta"]
                options = re.findall(r"^([A-Z])\. (\w+)$", text, re.M)
                if task == "Renditions":
                    assert answer in sy.SHAPES and answer == m["class"]
                    assert text.endswith("What is the object in the image?\nAnswer the question using a single word or phrase.")
                elif task == "FigureQA":
                    assert [o[1] for o in options] == m["colors"] and len(options) == 4
                    assert "Which bar is the tallest?\nA. " in text and m["question"] == "tallest"
                    assert answer == "ABCD"[int(np.argmax(m["heights"]))]
                    assert text.endswith("\nAnswer with the option's letter from the given choices directly.")
                elif task == "IconQA":
                    if m["question"]["type"] == "most":
                        assert [o[1] for o in options] == m["kinds"] == [k for k in sy.ICON_KINDS if k in m["kinds"]]
                        assert len(options) == sy.ICON_MC_KINDS == 3
                        best = max(m["counts"], key=m["counts"].get)
                        others = [c for k, c in m["counts"].items() if k != best]
                        assert m["counts"][best] >= max(others) + sy.ICON_MC_MARGIN
                        assert answer in [o[0] for o in options] and options["ABCD".index(answer)][1] == best
                    else:  # one kind of icon, counted
                        assert not options and answer.isdigit() and m["kinds"] == [m["question"]["kind"]]
                        assert 1 <= int(answer) == m["counts"][m["question"]["kind"]] <= sy.ICON_COUNT_MAX
                        assert f"How many {sy.ICON_PLURALS[m['question']['kind']]} are there?" in text
                        assert text.endswith("\nAnswer the question using a single word or phrase.")
                    assert sum(m["counts"].values()) == len(m["cells"]) <= m["grid"] ** 2
                elif task == "ClevrMath":
                    objs = m["objects"]
                    assert 3 <= len(objs) <= 6 and answer.isdigit()
                    if "subtract" in m:
                        sub = m["subtract"]
                        assert int(answer) == sum(not sy.clevr_matches(o, sub) for o in objs)
                        what = re.search(r"Subtract all (.+)\. How many objects are left\?\n", text).group(1).split()
                    else:
                        sub = m["add"]
                        k, *what = re.search(r"Add (\d) (.+)\. How many objects are there\?\n", text).group(1, 2)
                        what = what[0].split()
                        assert int(k) == sub["count"] and int(answer) == len(objs) + sub["count"]
                        if sub["count"] == 1:  # "Add 1 red cube"
                            what[-1] += "s"
                    assert (sub["color"] is not None) == (what[0] in sy.CLEVR_COLORS)
                    assert what[-1] == (sy.CLEVR_PLURALS[sub["shape"]] if sub["shape"] else "objects")
                    for a in objs:  # non-overlapping (bounding squares apart)
                        for b in objs:
                            if a is not b:
                                assert max(abs(a["x"] - b["x"]), abs(a["y"] - b["y"])) >= (a["size"] + b["size"]) / 2


def _records(root: Path, task: str):
    """(record, image as an int array) for every train and test record of a task."""
    for file in ("train.json", "test.json"):
        for r in _load(root, task, file):
            with Image.open(root / "datasets" / r["image"]) as img:
                yield r, np.asarray(img, dtype=int)


def _cell(a: np.ndarray, row: int, col: int, margin: int = 0) -> np.ndarray:
    c = a.shape[0] // sy.GRID
    return a[row * c + margin:(row + 1) * c - margin, col * c + margin:(col + 1) * c - margin]


def test_figureqa_bars_in_column_cells(bench):
    c = SIZE // sy.GRID
    for r, a in _records(bench, "FigureQA"):
        m = r["meta"]
        cols, heights = m["columns"], m["heights"]
        assert len(cols) == len(m["colors"]) == len(heights) and cols == sorted(set(cols))
        assert set(cols) <= set(range(sy.GRID)) and 0.6 <= m["width"] <= 0.7
        h = np.sort(heights)
        # the tallest bar 40% of the chart above the next, the shortest 1/8 below the next
        assert np.diff(h).min() > 0 and h[1] - h[0] >= 1 / 8 - 1e-6 and h[-1] - h[-2] >= 0.4 - 1e-6
        for col in range(sy.GRID):  # each bar stands on the bottom edge in its own column, in option order
            if col in cols:
                color = sy.COLORS[m["colors"][cols.index(col)]]
                assert np.abs(a[SIZE - 2, col * c + c // 2] - color).max() <= 40, (r["image"], col)
            else:
                assert a[:SIZE - 1, col * c + 1:(col + 1) * c - 1].min() >= 200, (r["image"], col)


def test_clevr_objects_in_distinct_cells(bench):
    for r, a in _records(bench, "ClevrMath"):
        objs = r["meta"]["objects"]
        cells = [tuple(o["cell"]) for o in objs]
        assert len(set(cells)) == len(cells)
        for o, (row, col) in zip(objs, cells):
            assert 0.70 <= o["size"] * sy.GRID <= 0.78
            for v, k in ((o["x"], col), (o["y"], row)):  # the object's square inside its cell
                assert abs(v * sy.GRID - (k + 0.5)) + o["size"] * sy.GRID / 2 <= 0.5
            centre = a[int(o["y"] * SIZE), int(o["x"] * SIZE)]
            assert len(set(centre)) > 1, (r["image"], o)  # not the gray floor (r == g == b)
        for row in range(sy.GRID):
            for col in range(sy.GRID):
                if (row, col) not in cells:
                    block = _cell(a, row, col, margin=2)
                    assert (block == block[..., :1]).all(), (r["image"], row, col)


def test_iconqa_icons_on_the_grid(bench):
    for r, a in _records(bench, "IconQA"):
        m = r["meta"]
        assert m["grid"] == sy.GRID == 4
        cells = {(row, col): kind for row, col, kind in m["cells"]}
        assert len(cells) == len(m["cells"])
        for row in range(sy.GRID):
            for col in range(sy.GRID):
                block = _cell(a, row, col, margin=2)
                if (row, col) in cells:  # an icon of its kind's colour, centred in the cell
                    dist = np.abs(block - np.array(sy.ICON_COLORS[cells[row, col]])).max(-1)
                    assert dist.min() <= 20, (r["image"], row, col)
                else:
                    assert block.min() >= 240, (r["image"], row, col)


def test_renditions_one_large_centred_object(bench):
    for r, a in _records(bench, "Renditions"):
        m = r["meta"]
        assert sy.RENDITION_SIZE[0] <= m["size"] <= sy.RENDITION_SIZE[1] == 0.85 and sy.RENDITION_SIZE[0] == 0.55
        assert abs(m["x"] - 0.5) <= 0.04 and abs(m["y"] - 0.5) <= 0.04


def test_clevr_question_mix():
    """Half addition (1-3 objects), half subtraction of a set that one object makes up; every
    kind of description (colour, shape, both) in both; answers cover 2..9."""
    n = 800
    adds, described, single, answers = 0, set(), 0, set()
    for i in range(n):
        _, _, answer, _, m = sy.clevr_math.sample(sy.build.sample_rng(0, "ClevrMath", "train", i), 8)
        answers.add(int(answer))
        if "add" in m:
            adds += 1
            assert 1 <= m["add"]["count"] <= sy.CLEVR_MAX_ADD
            subject = m["add"]
        else:
            subject = m["subtract"]
            single += sum(sy.clevr_matches(o, subject) for o in m["objects"]) == 1
        described.add(("add" in m, subject["color"] is not None, subject["shape"] is not None))
    assert abs(adds / n - 0.5) < 0.06
    assert single >= 0.98 * (n - adds)  # a twin-only scene is the rare exception
    assert described == {(a, c, s) for a in (True, False) for c, s in ((True, False), (False, True), (True, True))}
    assert answers == set(range(2, 10)) and sy.CLEVR_ANSWER_RANGE == 8


def test_captions_describe_the_scene(bench):
    for r in _load(bench, "ObjectCaption", "test.json"):
        objs = r["meta"]["objects"]
        assert r["answer"].startswith(f"a {objs[0]['color']} {objs[0]['kind']}")
        if len(objs) == 2:
            assert f"a {objs[1]['color']} {objs[1]['kind']}" in r["answer"]
    for r in _load(bench, "SceneCaption", "test.json"):
        m = r["meta"]
        assert ("house" in r["answer"]) == m["house"] and ("person" in r["answer"]) == m["person"]
        assert ("tree" in r["answer"]) == (m["trees"] > 0)


def test_phrasing_draws_are_its_listed_sentences():
    phrasing = sy.texts.Phrasing(["{x} {place}", "there is {x} {on}", "{x}"],
                                 {"place": ["on a table", "sitting on a table"], "on": ["on the table"]})
    listed = phrasing.all(x="a cup")
    assert listed == ["a cup on a table", "a cup sitting on a table", "there is a cup on the table", "a cup"]
    rng = np.random.default_rng(0)
    drawn = [phrasing.draw(rng, x="a cup") for _ in range(3000)]
    assert set(drawn) == set(listed)
    assert abs(drawn.count("a cup") / 3000 - 1 / 3) < 0.03  # a form first, uniformly, then its slots
    sequence = iter(["a", "a", "b", "a", "c", "d"])
    assert sy.texts.distinct_draws(lambda: next(sequence), 3) == ["a", "b", "c"]
    assert sy.texts.distinct_draws(lambda: "a", 3, tries=5) == ["a", "a", "a"]  # one wording: repeats kept


@pytest.mark.parametrize("color_share", [0.5, 0.7])
def test_varied_object_captions_disagree_as_captioners_do(color_share):
    """`references="varied"`: three references in different wordings and a training caption drawn
    apart from them; colours named at the given share, a two-object scene's objects both named in
    about four of five captions, and the training caption rarely one of its image's references."""
    n, with_color, named, both, two, repeated = 600, 0, 0, 0, 0, 0
    for i in range(n):
        rng = sy.build.sample_rng(0, sy.object_caption.NAME, "train", i)
        _, _, caption, refs, meta = sy.object_caption.sample(rng, 8, references="varied", color_share=color_share)
        objs = meta["objects"]
        wordings = sy.object_caption.varied_wordings(objs)
        assert len(set(refs)) == 3 and caption in wordings and all(r in wordings for r in refs)
        repeated += caption in refs
        for r in refs:
            kinds = [o["kind"] for o in objs if o["kind"] in r.split()]
            assert kinds, (r, objs)
            named += len(kinds)
            with_color += sum(f"{o['color']} {o['kind']}" in r for o in objs if o["kind"] in r.split())
            if len(objs) == 2 and objs[0]["kind"] != objs[1]["kind"]:
                two += 1
                both += len(kinds) == 2
    assert abs(with_color / named - color_share) < 0.05
    assert abs(both / two - sy.object_caption.BOTH_NAMED) < 0.06
    assert repeated / n < 0.1


def test_mixture(mixture):
    records = _load(mixture, sy.MIXTURE, "train.json")
    assert len(records) == 40
    assert json.loads((mixture / sy.MARKER).read_text())["mixture"]["num_samples"] == 40
    turns = {len(r["conversations"]) for r in records}
    assert turns <= {4, 6} and 6 in turns  # MIXTURE_TURNS questions, fewer where a family has fewer
    task_instructions = set()
    for task in sy.TASKS:
        for i in range(30):
            task_instructions.add(task.sample(sy.build.sample_rng(0, task.NAME, "train", i), 8)[1])
    # the tasks' instructions the mixture asks (about scenes their tasks never draw: checked in
    # test_mixture_format_turns_ask_each_task_about_other_scenes)
    format_instructions = {sy.renditions.RENDITIONS_Q, sy.object_caption.OBJECT_CAPTION_Q, sy.scene_caption.SCENE_Q}
    for r in records:
        conv = r["conversations"]
        assert [c["from"] for c in conv] == ["human", "gpt"] * (len(conv) // 2)
        assert conv[0]["value"].startswith("<image>\n")
        assert sum(c["value"].count("<image>") for c in conv) == 1
        for c in conv[::2]:
            question = c["value"].replace("<image>\n", "")
            assert question not in task_instructions or question in format_instructions \
                or re.fullmatch(r"Subtract all \w+ objects\. How many objects are left\?\n.*", question, re.S), question
        assert (mixture / "datasets" / r["image"]).is_file()


FAMILY_TARGETS = {"shapes": 0.35, "bars": 0.15, "icons": 0.12, "clevr": 0.15, "table": 0.12, "outdoor": 0.11}
ORDINAL = {"first": 0, "second": 1, "third": 2, "fourth": 3}


UNNAMED = [c for c in sy.SHAPES if c not in sy.renditions.NAMED_IN_MIXTURE]
DIGIT_ANSWERS = {  # mixture questions answered with a digit, and the count they give
    "n_shapes_digit": lambda m: len(m["shapes"]), "n_bars_digit": lambda m: len(m["heights"]),
    "n_objects_digit": lambda m: len(m["objects"]), "n_trees_digit": lambda m: m["trees"],
    "n_kinds": lambda m: sum(n > 0 for n in m["counts"].values()),
}
MC_ANSWERS = {  # mixture multiple-choice questions, and whether the chosen option is right
    "shape_color_mc": lambda option, m: option == m["color"],
    "nth_color_mc": lambda option, m, q: option == m["colors"][ORDINAL[re.search(r"the (\w+) bar", q).group(1)]],
    "which_on_table": lambda option, m: option in [o["kind"] for o in m["objects"]],
    "which_icon": lambda option, m: m["counts"].get(option, 0) > 0,
    "clevr_color_mc": lambda option, m, q: any(o["color"] == option and o["shape"] == re.search(
        r"What color is the (\w+)\?", q).group(1) for o in m["objects"]),
    "time_of_day_mc": lambda option, m: option == m["time"],
    "option_lookup": lambda option, m, q: option == re.match(r"Which option is (\w+)\?", q).group(1),
}


def _check_mixture_formats(key, question, answer, meta, formats):
    """The mixture teaches the tasks' answer formats on questions of its own, and every such answer is
    right; it never names a class it keeps for Renditions, and its captions of table tops and
    outdoor scenes name what the scene holds in a style of their own, never in the caption tasks'
    phrases (the table, the place, the time of day)."""
    assert not any(re.search(rf"\b{c}\b", question + " " + answer) for c in UNNAMED), (question, answer)
    if key in DIGIT_ANSWERS:
        assert question.endswith(sy.texts.SINGLE_WORD) and answer == str(DIGIT_ANSWERS[key](meta))
        formats["digit"] += 1
    if key in MC_ANSWERS:
        assert question.endswith(sy.texts.MC_SUFFIX) and re.fullmatch(r"[A-D]", answer)
        option = re.search(rf"^{answer}\. (\w+)$", question, re.M).group(1)
        check = MC_ANSWERS[key]
        assert (check(option, meta, question) if check.__code__.co_argcount == 3 else check(option, meta)), question
        formats["letter"] += 1
    if key == "caption":
        assert question in sy.texts.CAPTION_PROMPTS
        if meta["family"] in ("table", "outdoor"):
            _check_own_style_caption(answer, meta)
            formats["free scene caption"] += 1
        formats["caption"] += 1
    if question.endswith(sy.texts.SINGLE_WORD) and key not in DIGIT_ANSWERS:
        assert len(answer.split()) == 1, (question, answer)
        formats["word"] += 1


def _check_own_style_caption(answer, meta):
    """The mixture's caption of a table top or an outdoor scene says what it holds in its own
    phrasing: counted things ("one red cup"), none of the task's phrases, and no four words in a
    row of any of the scene's references."""
    task_phrases = [p for phrases in (*sy.scene_caption.TIME_PHRASES.values(), *sy.scene_caption.GROUND_PHRASES.values())
                    for p in phrases] + ["table", "next to", "beside", "sitting", "there is", "there are", "standing"]
    assert not any(re.search(rf"\b{p}\b", answer) for p in task_phrases), answer
    if meta["family"] == "table":
        assert answer == sy.texts.and_list([f"one {o['color']} {o['kind']}" for o in meta["objects"]])
        references = sy.object_caption._object_captions(meta["objects"]) + sy.object_caption.varied_wordings(meta["objects"])
    else:
        assert answer.startswith(f"a {meta['time']} scene of ")
        things = answer.removeprefix(f"a {meta['time']} scene of ")
        assert ("house" in things) == meta["house"] and ("person" in things) == meta["person"]
        if meta["house"]:
            assert f"one {meta['house_color']} house" in things
        assert ("tree" in things) == (meta["trees"] > 0)
        if meta["trees"]:
            assert things.startswith(sy.scene_caption.MIXTURE_TREES[meta["trees"]])
        references = sy.scene_caption._scene_captions(meta)
    grams = lambda text: {tuple(text.split()[i:i + 4]) for i in range(len(text.split()) - 3)}  # noqa: E731
    assert not grams(answer) & set().union(*(grams(r) for r in references)), (answer, references)


def test_mixture_families_and_answers():
    n = 2000
    families, asked, is_shape_yes, single, named, named_asked = {}, {}, 0, 0, 0, 0
    formats = {"digit": 0, "letter": 0, "caption": 0, "free scene caption": 0, "word": 0}
    for i in range(n):
        _, qa, m = sy.mixture.sample(sy.build.sample_rng(0, sy.MIXTURE_STREAM, "train", i), 8)
        single += m.get("layout") == "single"
        named += m.get("layout") == "single" and m["class"] in sy.renditions.NAMED_IN_MIXTURE
        families[m["family"]] = families.get(m["family"], 0) + 1
        assert len(m["asked"]) == len(qa)
        for key in set(m["asked"]):
            asked[key] = asked.get(key, 0) + 1
        named_asked += bool({"what_shape", "shape_name", "in_picture"} & set(m["asked"]))
        for key, (q, a) in zip(m["asked"], qa):
            if key == "what_shape":
                assert q == "What shape is this?" and m["layout"] == "single" and m["rendition"] in sy.RENDITIONS
                assert a == f"this is {sy.texts.art(m['class'])} {m['class']}"
            elif key == "shape_name":
                assert q == "What shape is in the image?" + sy.texts.SINGLE_WORD and a == m["class"]
                assert m["layout"] == "single" and m["class"] in sy.renditions.NAMED_IN_MIXTURE
            elif key == "is_shape":
                x = re.fullmatch(r"Is the shape an? (\w+)\?", q).group(1)
                assert a == ("yes" if x == m["class"] else "no")
                is_shape_yes += a == "yes"
            elif key in ("highest", "lowest"):
                pick = np.argmax if key == "highest" else np.argmin
                word = re.fullmatch(r"the (\w+) bar from the left", a).group(1)
                assert ORDINAL[word] == int(pick(m["heights"]))
            elif key == "higher":
                h = m["heights"]
                assert len(h) == 2 and a == ("the left one" if h[0] > h[1] else "the right one")
            elif key == "how_many_color":
                color = re.fullmatch(r"How many (\w+) objects are there\?", q).group(1)
                k = sum(o["color"] == color for o in m["objects"])
                assert a == ("zero" if k == 0 else sy.NUMBER_WORDS[k])
            _check_mixture_formats(key, q, a, m, formats)
            if m["family"] == "bars":
                assert m["columns"] == sorted(set(m["columns"])) and len(m["columns"]) == len(m["colors"])
            if m["family"] == "icons":
                assert m["grid"] == 4
            if m["family"] == "shapes" and m["layout"] == "blocks":
                blocks = [tuple(s["block"]) for s in m["shapes"]]
                assert all(r + 2 <= sy.GRID and c + 2 <= sy.GRID for r, c in blocks)
                for j, (r1, c1) in enumerate(blocks):  # 2x2-cell blocks that do not overlap
                    assert all(abs(r1 - r2) >= 2 or abs(c1 - c2) >= 2 for r2, c2 in blocks[j + 1:])
    for family, target in FAMILY_TARGETS.items():
        assert abs(families.get(family, 0) / n - target) < 0.03, (family, families)
    # nearly every single shape of a class the mixture names is named, in a sentence or in one word
    assert named_asked >= 0.9 * named and 0.11 <= named_asked / n <= 0.17, (named_asked, named)
    # three turns drawn by weight (5 for the sentence, 2 for each one-word form): about 0.7 and 0.34
    assert asked["what_shape"] >= 0.6 * named, asked
    assert asked["shape_name"] >= 0.28 * named and asked["in_picture"] >= 0.28 * named, asked
    assert asked["is_shape"] > 0 and asked["highest"] > 0 and asked["how_many_color"] > 0
    assert asked["higher"] / n >= 0.025
    assert 0.2 <= is_shape_yes / asked["is_shape"] <= 0.4  # half the named shapes are asked about themselves
    assert all(count >= 0.04 * n for count in formats.values()), formats  # every answer format is taught
    # multiple choice, the format learnt last, is asked often; a quarter of the conversations end
    # with the text-only lookup
    assert formats["letter"] >= 0.4 * n and 0.2 <= asked["option_lookup"] / n <= 0.3, (formats, asked)


def test_mixture_format_turns_ask_each_task_about_other_scenes():
    """The tasks' own instructions in the mixture: each asked only about a family that is not its
    task's, answered in its task's format and rightly (the table top's one object by its kind, a
    subtraction by the count left, a caption by the family's own caption), never naming a
    Renditions class the mixture keeps for the task; every one of them is asked."""
    task_of = {sy.renditions.RENDITIONS_Q: sy.renditions, sy.object_caption.OBJECT_CAPTION_Q: sy.object_caption,
               sy.scene_caption.SCENE_Q: sy.scene_caption}
    n, asked = 2000, {}
    for i in range(n):
        _, qa, m = sy.mixture.sample(sy.build.sample_rng(0, sy.MIXTURE_STREAM, "train", i), 8)
        captions = [a for k, (q, a) in zip(m["asked"], qa) if k == "caption"]
        for key, (q, a) in zip(m["asked"], qa):
            if not key.startswith("format_"):
                continue
            asked[key] = asked.get(key, 0) + 1
            assert not any(re.search(rf"\b{c}\b", a) for c in UNNAMED), a
            if key == "format_subtract":
                color = re.fullmatch(r"Subtract all (\w+) objects\. How many objects are left\?", q.removesuffix(sy.texts.SINGLE_WORD)).group(1)
                assert m["family"] == "table" and q.endswith(sy.texts.SINGLE_WORD) and m["family"] != sy.clevr_math.FAMILY
                assert a == str(sum(o["color"] != color for o in m["objects"]))
                continue
            task = task_of[q]
            assert m["family"] != task.FAMILY, (q, m["family"])
            if key == "format_object":
                assert m["family"] == "table" and len(m["objects"]) == 1 and a == m["objects"][0]["kind"]
            else:
                assert m["family"] in (("shapes", "bars") if key == "format_object_caption" else ("clevr", "icons"))
                assert not captions or captions == [a], (a, captions)
    assert set(asked) == set(sy.mixture.FORMAT_WEIGHTS), asked
    assert asked["format_object"] >= 0.02 * n and asked["format_object_caption"] >= 0.1 * n, asked
    rng = np.random.default_rng(0)
    for family in sy.mixture.FAMILIES:  # a caption turn is the family's own caption of the scene
        for _ in range(20):
            _, qa, m = sy.mixture.FAMILIES[family].pretraining(rng, 8)
            own = {k: a for k, _, a, _ in qa}
            for key, _, a, weight in sy.mixture.task_format_turns(rng, family, m, qa):
                assert weight == sy.mixture.FORMAT_WEIGHTS[key]
                if key in ("format_object_caption", "format_scene_caption"):
                    assert a == own["caption"]


def test_chance_level(bench):
    assert sy.chance_level("Renditions", []) == pytest.approx(10.0)
    assert sy.chance_level("ClevrMath", []) == pytest.approx(100 / 8)
    assert sy.chance_level("ObjectCaption", []) is None and sy.chance_level("SceneCaption", []) is None
    fig = _load(bench, "FigureQA", "test.json")
    assert sy.chance_level("FigureQA", fig) == pytest.approx(np.mean([100 / len(r["meta"]["colors"]) for r in fig]))
    icon = _load(bench, "IconQA", "test.json")
    expected = [100 / 3 if r["meta"]["question"]["type"] == "most" else 100 / 6 for r in icon]
    assert sy.chance_level("IconQA", icon) == pytest.approx(np.mean(expected))
    with pytest.raises(ValueError):
        sy.chance_level("ImageNet-R", fig)


@pytest.mark.parametrize("kwargs", [{"tasks": ["ImageNet-R"]}, {"tasks": []}, {"seed": -1}, {"train_per_task": 0}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        sy.generate_benchmark(tmp_path, **{"progress": False, **kwargs})
    assert not (tmp_path / sy.MARKER).exists()


def test_mixture_cell_labels_follow_the_layouts():
    seen = set()
    for i in range(300):
        _, _, m = sy.mixture.sample(sy.build.sample_rng(0, sy.MIXTURE_STREAM, "train", i), 32)
        cells = sy.mixture_cell_labels(m)
        family, layout = m["family"], m.get("layout")
        seen.add(family if family != "shapes" else layout)
        if family in ("table", "outdoor"):
            assert cells is None
            continue
        assert len(cells) == sy.GRID * sy.GRID
        if family == "icons":
            for kind, count in m["counts"].items():
                assert cells.count(f"icon {kind}") == count
            assert cells.count(sy.EMPTY_CELL) == 16 - sum(m["counts"].values())
        elif family == "clevr":
            for o in m["objects"]:
                assert cells[o["cell"][0] * 4 + o["cell"][1]] == f"{o['color']} {o['shape']}"
            assert cells.count(sy.EMPTY_CELL) == 16 - len(m["objects"])
        elif layout == "single":
            assert set(cells) == {f"shape {m['class']}"}
        elif layout == "blocks":
            for s in m["shapes"]:
                assert cells.count(f"shape {s['class']}") == 4

        else:  # bars: a column's quarters add up to its bar's height, to within a quarter of a cell per cell
            for col in range(4):
                column = [0 if c == sy.EMPTY_CELL else int(c[3:]) for c in cells[col::4]]
                h = m["heights"][m["columns"].index(col)] if col in m["columns"] else 0.0
                assert abs(sum(column) / 16 - h) <= 4 * 0.125 / 4 + 1e-9, (col, h, cells)
                assert column == sorted(column)  # filled from the bottom up
    assert seen == {"icons", "clevr", "single", "blocks", "bars", "table", "outdoor"}


def test_mixture_bar_cell_labels_exact():
    meta = {"family": "bars", "columns": [0, 1], "heights": [0.5, 0.125], "colors": ["red", "blue"]}
    cells = sy.mixture_cell_labels(meta)
    assert cells[0::4] == ["empty", "empty", "bar4", "bar4"]
    assert cells[1::4] == ["empty", "empty", "empty", "bar2"]
    assert cells[2::4] == cells[3::4] == ["empty"] * 4


def test_mixture_counts():
    seen = set()
    for i in range(200):
        _, _, m = sy.mixture.sample(sy.build.sample_rng(0, sy.MIXTURE_STREAM, "train", i), 32)
        counts = sy.mixture_counts(m)
        if m["family"] == "icons":
            assert counts == {**{f"icons {k}": m["counts"].get(k, 0) for k in sy.ICON_KINDS},
                              "icons total": len(m["cells"])}
        elif m["family"] == "clevr":
            objs = m["objects"]
            assert counts["clevr total"] == len(objs) == sum(counts[f"clevr {c}"] for c in sy.CLEVR_COLORS)
            assert sum(counts[f"clevr {s}"] for s in sy.CLEVR_SHAPES) == len(objs)
            for o in objs:
                assert counts[f"clevr {o['color']}"] >= 1 and counts[f"clevr {o['shape']}"] >= 1
        elif m["family"] == "table":
            objs = m["objects"]
            assert counts == {**{f"table {k}": sum(o["kind"] == k for o in objs) for k in sy.object_caption.TABLE_OBJECTS},
                              **{f"table {c}": sum(o["color"] == c for o in objs) for c in sy.object_caption.OBJECT_COLORS},
                              "table total": len(objs)}
        elif m["family"] == "outdoor":
            assert counts == {"outdoor trees": m["trees"], "outdoor houses": int(m["house"]),
                              "outdoor people": int(m["person"])}
        else:
            assert counts is None
        seen.add(m["family"])
    assert {"icons", "clevr", "table", "outdoor"} <= seen


def test_repeat_turns_add_to_the_mixture_and_produce_every_word(tmp_path):
    """With a repeat share, that share of the conversations gains one last, image-free turn that
    repeats 4-8 vocabulary words; everything else in every conversation stays as it was; the
    turn's words are the tokenizer's own (no new token), and the vision tower never learns them."""
    from hide.models.tiny import build_tokenizer

    n, share, seen = 600, 0.3, set()
    repeats = 0
    for i in range(n):
        img, qa, meta = sy.mixture.sample(sy.build.sample_rng(0, sy.MIXTURE_STREAM, "train", i), 8, share)
        img0, qa0, meta0 = sy.mixture.sample(sy.build.sample_rng(0, sy.MIXTURE_STREAM, "train", i), 8)
        assert qa[:len(qa0)] == qa0 and np.array_equal(np.asarray(img), np.asarray(img0))
        assert len(qa) - len(qa0) in (0, 1)
        if len(qa) > len(qa0):
            repeats += 1
            question, answer = qa[-1]
            assert meta["asked"][-1] == "repeat" and question == f"{sy.mixture.REPEAT_Q}\n{answer}"
            words = answer.split()
            assert 4 <= len(words) <= 8 and set(words) <= set(sy.mixture.repeat_vocabulary())
            assert not sy.mixture.states_a_fact(question)
            seen |= set(words)
    assert abs(repeats / n - share) < 0.05
    assert len(seen) > 0.9 * len(sy.mixture.repeat_vocabulary())
    tokenizer = build_tokenizer()
    vocab = sy.mixture.repeat_vocabulary()
    assert tokenizer.unk_token_id not in tokenizer(" ".join([sy.mixture.REPEAT_Q, *vocab]))["input_ids"]
    # the share is part of the generated mixture's identity: a mixture without repeats is not reused
    root = tmp_path / "mixture"
    sy.generate_mixture(root, num_samples=8, image_size=8, progress=False)
    sy.generate_mixture(root, num_samples=8, image_size=8, progress=False, repeat_share=1.0)
    records = _load(root, sy.MIXTURE, "train.json")
    assert all(r["conversations"][-2]["value"].startswith(sy.mixture.REPEAT_Q) for r in records)


def test_a_task_with_its_own_training_size_keeps_the_others_and_its_first_records(bench, tmp_path):
    """`train_sizes` gives one task a training set of its own size: its first records are the
    ones a run of the common size draws (every sample has its own random stream), and the other
    tasks' files are unchanged."""
    sized = sy.generate_benchmark(tmp_path / "sized", train_per_task=N_TRAIN, test_per_task=N_TEST, image_size=SIZE,
                                  seed=0, progress=False, train_sizes={"SceneCaption": 2 * N_TRAIN})
    longer = _load(sized, "SceneCaption", "train.json")
    assert len(longer) == 2 * N_TRAIN
    assert longer[:N_TRAIN] == _load(bench, "SceneCaption", "train.json")
    common, own = _tree_digest(bench), _tree_digest(sized)
    for path, digest in common.items():
        if not path.startswith(("instructions/SceneCaption/train", "datasets/SceneCaption/train")):
            assert own[path] == digest, path
    marker = json.loads((sized / sy.MARKER).read_text())
    assert marker["benchmark"]["train_sizes"] == {"SceneCaption": 2 * N_TRAIN}


def test_the_benchmark_reads_each_tasks_own_training_size(tmp_path):
    from hide.data.datamodule import SyntheticBenchmark
    from hide.errors import ConfigError

    benchmark = SyntheticBenchmark(str(tmp_path), train_per_task=6, test_per_task=4, image_size=SIZE,
                                   select=["ObjectCaption", "SceneCaption"], train_scale={"SceneCaption": 1.5})
    assert benchmark.data_dir.name == "n6-SceneCaption9-t4-px32-s0"
    assert [len(t.train) for t in benchmark.load()] == [6, 9]
    same = SyntheticBenchmark(str(tmp_path), train_per_task=6, test_per_task=4, image_size=SIZE,
                              train_scale={"SceneCaption": 1.0})
    assert same.data_dir.name == "n6-t4-px32-s0"  # a scale of 1 changes nothing
    with pytest.raises(ConfigError, match="Scenecaption"):
        SyntheticBenchmark(str(tmp_path), train_scale={"Scenecaption": 2})


def test_varied_object_captions_option_writes_its_own_data(tmp_path):
    """`benchmark.object_captions=varied` writes ObjectCaption with captioners' references in a
    folder of its own (the default's data and folder name are those without the option), and
    leaves the other tasks' data as they are."""
    from hide.data.datamodule import SyntheticBenchmark
    from hide.errors import ConfigError

    kwargs = dict(train_per_task=6, test_per_task=4, image_size=SIZE, select=["Renditions", "ObjectCaption"])
    fixed = SyntheticBenchmark(str(tmp_path), **kwargs)
    varied = SyntheticBenchmark(str(tmp_path), object_captions="varied", object_caption_color_share=0.5, **kwargs)
    assert fixed.data_dir.name == "n6-t4-px32-s0" and varied.data_dir.name == "n6-t4-px32-s0-ocvaried0.5"
    (renditions_f, captions_f), (renditions_v, captions_v) = fixed.load(), varied.load()
    assert [r.answer for r in renditions_f.test] == [r.answer for r in renditions_v.test]
    assert [r.image.read_bytes() for r in captions_f.test] == [r.image.read_bytes() for r in captions_v.test]
    for f, v in zip(captions_f.test, captions_v.test):
        refs_f, refs_v = captions_f.references[f.question_id], captions_v.references[v.question_id]
        assert refs_f[1].startswith("there is") and refs_f[0] == f.answer  # the fixed wordings
        assert len(set(refs_v)) == 3 and refs_v != refs_f and v.answer == refs_v[0]
    marker = json.loads((varied.data_dir / sy.MARKER).read_text())["benchmark"]
    assert marker["task_options"] == {"ObjectCaption": {"color_share": 0.5, "references": "varied"}}
    with pytest.raises(ConfigError, match="object_captions"):
        SyntheticBenchmark(str(tmp_path), object_captions="first")
    with pytest.raises(ConfigError, match="color_share"):
        SyntheticBenchmark(str(tmp_path), object_captions="varied", object_caption_color_share=1.5)
