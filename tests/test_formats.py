"""Round trip and validation of the UCIT on-disk formats (src/hide/data/formats.py)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

from hide.data.collate import load_image
from hide.errors import ConfigError

from hide.atomic import write_json_atomic
from hide.data.formats import (
    DataFormatError,
    TaskSpec,
    TestRecord,
    TrainRecord,
    Turn,
    load_caption_references,
    load_task,
    load_test_file,
    load_train_file,
    write_caption_references,
    write_test_file,
    write_train_file,
)

QA = TaskSpec(name="ToyQA", kind="qa", train_file="train.json", test_file="test.json")
CAP = TaskSpec(
    name="ToyCap",
    kind="caption",
    train_file="train_brief.json",
    test_file="test.json",
    references_file="refs.json",
    dir="CapDir",
)


def _png(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path)


def _qa_train() -> list[dict]:
    return [
        {
            "id": f"qa-{i}",
            "image": f"ToyQA/images/{i}.png",
            "conversations": [
                {"from": "human", "value": f"<image>\nWhat color is image {i}?"},
                {"from": "gpt", "value": f"color{i}"},
            ],
        }
        for i in range(3)
    ] + [
        {  # multi-turn, integer id
            "id": 7,
            "image": "ToyQA/images/0.png",
            "conversations": [
                {"from": "human", "value": "<image>\nFirst question?"},
                {"from": "gpt", "value": "A"},
                {"from": "human", "value": "Second question?"},
                {"from": "gpt", "value": "B"},
            ],
        }
    ]


def _qa_test() -> list[dict]:
    return [
        {"question_id": i, "image": f"ToyQA/images/{i}.png", "text": f"Which color? {i}", "answer": f"c{i}"}
        for i in range(3)
    ]


def _cap_train() -> list[dict]:
    return [
        {
            "id": f"cap-{i}",
            "image": f"ToyCap/train/{i}.png",
            "conversations": [
                {"from": "human", "value": "<image>\nDescribe the image briefly."},
                {"from": "gpt", "value": f"a plain square number {i}"},
            ],
        }
        for i in range(2)
    ]


def _cap_test() -> list[dict]:
    return [
        {"question_id": f"t{i}", "image": f"ToyCap/test/{i}.png", "text": "<image>\nDescribe briefly.", "answer": ""}
        for i in range(3)
    ]


CAP_REFS = [["a red square", "red"], ["a green square"], ["a blue square", "blue", "square"]]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small valid UCIT-format tree: one QA task and one caption task."""
    ds = tmp_path / "datasets"
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for i, c in enumerate(colors):
        _png(ds / "ToyQA" / "images" / f"{i}.png", c)
        _png(ds / "ToyCap" / "test" / f"{i}.png", c)
    for i in range(2):
        _png(ds / "ToyCap" / "train" / f"{i}.png", colors[i])
    qa_dir = tmp_path / "instructions" / "ToyQA"
    write_train_file(qa_dir / "train.json", _qa_train())
    write_test_file(qa_dir / "test.json", _qa_test())
    cap_dir = tmp_path / "instructions" / "CapDir"
    write_train_file(cap_dir / "train_brief.json", _cap_train())
    write_test_file(cap_dir / "test.json", _cap_test())
    write_caption_references(cap_dir / "refs.json", [f"{i}.png" for i in range(3)], CAP_REFS)
    return tmp_path


# --------------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------------


def test_round_trip_qa(tree: Path) -> None:
    task = load_task(tree, QA)
    ds = tree / "datasets"
    assert task.name == "ToyQA" and task.kind == "qa" and task.references is None
    expected_train = [
        TrainRecord(
            id=f"qa-{i}",
            image=ds / "ToyQA" / "images" / f"{i}.png",
            turns=[Turn(instruction=f"What color is image {i}?", answer=f"color{i}")],
        )
        for i in range(3)
    ] + [
        TrainRecord(
            id="7",
            image=ds / "ToyQA" / "images" / "0.png",
            turns=[Turn("First question?", "A"), Turn("Second question?", "B")],
        )
    ]
    assert task.train == expected_train
    assert task.test == [
        TestRecord(question_id=str(i), image=ds / "ToyQA" / "images" / f"{i}.png", text=f"Which color? {i}", answer=f"c{i}")
        for i in range(3)
    ]
    assert all(r.image.is_absolute() for r in task.train + task.test)


def test_round_trip_caption_and_limits(tree: Path) -> None:
    task = load_task(tree, CAP)
    assert [r.question_id for r in task.test] == ["t0", "t1", "t2"]
    assert all(r.text == "Describe briefly." for r in task.test)  # leading "<image>\n" stripped
    assert task.references == {"t0": CAP_REFS[0], "t1": CAP_REFS[1], "t2": CAP_REFS[2]}
    assert task.train[1].turns == [Turn("Describe the image briefly.", "a plain square number 1")]

    small = load_task(tree, CAP, train_limit=1, test_limit=2)
    assert [r.id for r in small.train] == ["cap-0"]
    assert [r.question_id for r in small.test] == ["t0", "t1"]
    assert small.references == {"t0": CAP_REFS[0], "t1": CAP_REFS[1]}
    # limits larger than the file keep everything
    assert len(load_task(tree, QA, train_limit=100, test_limit=100).train) == 4


def test_references_matched_by_sorted_image_id(tree: Path) -> None:
    test = load_test_file(tree / "instructions/CapDir/test.json", tree / "datasets")
    refs = tree / "refs_unsorted.json"
    write_json_atomic(
        refs,
        {
            "images": [{"id": 30, "file_name": "c"}, {"id": 10, "file_name": "a"}, {"id": 20, "file_name": "b"}],
            "annotations": [
                {"image_id": 20, "caption": "second"},
                {"image_id": 30, "caption": "third"},
                {"image_id": 10, "caption": "first"},
                {"image_id": 10, "caption": "first again"},
            ],
        },
    )
    assert load_caption_references(refs, test) == {
        "t0": ["first", "first again"],
        "t1": ["second"],
        "t2": ["third"],
    }
    # in the file's image order, as pycocoevalcap scores them (COCO.getImgIds: the 'images' list)
    assert list(load_caption_references(refs, test)) == ["t2", "t0", "t1"]


def test_check_images_flag_and_limit_only_checks_kept_images(tree: Path) -> None:
    (tree / "datasets/ToyQA/images/2.png").unlink()  # used by train record 2 and test record 2
    assert len(load_train_file(tree / "instructions/ToyQA/train.json", tree / "datasets", check_images=False)) == 4
    assert len(load_task(tree, QA, check_images=False).test) == 3
    task = load_task(tree, QA, train_limit=2, test_limit=2)
    assert len(task.train) == 2 and len(task.test) == 2


def test_task_spec_validation() -> None:
    assert QA.dir == "ToyQA" and CAP.dir == "CapDir"
    with pytest.raises(DataFormatError, match="kind must be one of"):
        TaskSpec(name="X", kind="vqa", train_file="a.json", test_file="b.json")
    with pytest.raises(ValueError, match="caption task but has no references_file"):
        TaskSpec(name="X", kind="caption", train_file="a.json", test_file="b.json")
    with pytest.raises(DataFormatError, match="QA task but has references_file"):
        TaskSpec(name="X", kind="qa", train_file="a.json", test_file="b.json", references_file="r.json")
    with pytest.raises(ValueError, match="train_limit"):
        load_task("/nonexistent", QA, train_limit=0)


# --------------------------------------------------------------------------------------------
# Bad inputs: one case per defect
# --------------------------------------------------------------------------------------------

QA_TRAIN = "instructions/ToyQA/train.json"
QA_TEST = "instructions/ToyQA/test.json"
CAP_TEST = "instructions/CapDir/test.json"
CAP_REFS_FILE = "instructions/CapDir/refs.json"


@dataclass
class Case:
    id: str
    file: str  # relative to the tree
    mutate: Callable[[object], object] | None  # JSON in -> JSON out; None = write `raw` text
    match: str  # regex searched in the message (after the file name)
    spec: TaskSpec = QA
    raw: str | None = None
    test_limit: int | None = None
    delete: str | None = None  # a path to delete instead of mutating
    image: Callable[[Path], None] | None = None  # rewrites the image file `file` instead
    max_image_pixels: int | None = None
    decode: bool = False  # the fault shows only when the image is decoded (the collator), not at load


def _train_rec(data: list, i: int, **changes) -> list:
    data[i].update(changes)
    return data


def _conv(data: list, i: int, conv: list) -> list:
    data[i]["conversations"] = conv
    return data


def _drop(data: list, i: int, key: str) -> list:
    del data[i][key]
    return data


H = "human"
G = "gpt"
QA_IMAGE_1 = "datasets/ToyQA/images/1.png"  # used by train record 1 and test record 1


def _noise_png(path: Path, size: int = 64) -> bytes:
    import numpy as np

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def _truncate(path: Path) -> None:
    data = _noise_png(path)
    path.write_bytes(data[: len(data) // 2])


def _big(path: Path) -> None:
    Image.new("RGB", (100, 80), (1, 2, 3)).save(path)

CASES = [
    Case("malformed_json", QA_TRAIN, None, r"train\.json is not valid JSON: .* at line 2, column \d+", raw='[\n{"id": 1,,}]'),
    Case("malformed_json_test", QA_TEST, None, r"test\.json is not valid JSON: .*line 1, column", raw="[{]"),
    Case("top_level_not_list", QA_TRAIN, lambda d: {"data": d}, r"train\.json must hold a JSON list .* holds an object"),
    Case("record_not_object", QA_TRAIN, lambda d: d[:1] + ["oops"], r"train\.json: record at index 1 must be a JSON object"),
    Case("missing_key_train", QA_TRAIN, lambda d: _drop(d, 1, "image"), r"train\.json: record at index 1 \(id 'qa-1'\) is missing the key\(s\) 'image'"),
    Case("missing_key_test", QA_TEST, lambda d: _drop(d, 2, "answer"), r"test\.json: record at index 2 \(id 2\) is missing the key\(s\) 'answer'"),
    Case("wrong_type_id", QA_TRAIN, lambda d: _train_rec(d, 0, id=[1]), r"train\.json: record at index 0 \(id \[1\]\): 'id' must be a string or an integer"),
    Case("wrong_type_image", QA_TRAIN, lambda d: _train_rec(d, 2, image=5), r"train\.json: record at index 2 \(id 'qa-2'\): 'image' must be a non-empty string"),
    Case("wrong_type_value", QA_TRAIN, lambda d: _conv(d, 1, [{"from": H, "value": "<image>\nq"}, {"from": G, "value": 3}]), r"train\.json: record at index 1 \(id 'qa-1'\): the 'value' of turn 1 .* must be a string"),
    Case("wrong_type_conversations", QA_TRAIN, lambda d: _conv(d, 0, "hi"), r"train\.json: record at index 0 \(id 'qa-0'\): 'conversations' must be a list"),
    Case("wrong_type_answer", QA_TEST, lambda d: _train_rec(d, 1, answer=4), r"test\.json: record at index 1 \(id 1\): 'answer' must be a string"),
    Case("wrong_type_question_id", QA_TEST, lambda d: _train_rec(d, 0, question_id=None), r"test\.json: record at index 0: 'question_id' must be a string or an integer, got null"),
    Case("empty_conversations", QA_TRAIN, lambda d: _conv(d, 2, []), r"train\.json: record at index 2 \(id 'qa-2'\): 'conversations' is empty"),
    Case("no_image_token", QA_TRAIN, lambda d: _conv(d, 1, [{"from": H, "value": "q"}, {"from": G, "value": "a"}]), r"train\.json: record at index 1 \(id 'qa-1'\): the first human turn must contain exactly one <image> token, but it contains 0"),
    Case("two_image_tokens", QA_TRAIN, lambda d: _conv(d, 1, [{"from": H, "value": "<image>\n<image>\nq"}, {"from": G, "value": "a"}]), r"train\.json: record at index 1 \(id 'qa-1'\): .*contains 2"),
    Case("image_token_later_turn", QA_TRAIN, lambda d: _conv(d, 3, [{"from": H, "value": "<image>\nq"}, {"from": G, "value": "a"}, {"from": H, "value": "<image> again"}, {"from": G, "value": "b"}]), r"train\.json: record at index 3 \(id 7\): turn 2 .* contains 1 <image> token"),
    Case("image_token_in_test_text", QA_TEST, lambda d: _train_rec(d, 1, text="look <image>"), r"test\.json: record at index 1 \(id 1\): 'text' contains an <image> token"),
    Case("turns_not_alternating", QA_TRAIN, lambda d: _conv(d, 0, [{"from": H, "value": "<image>\nq"}, {"from": H, "value": "q2"}]), r"train\.json: record at index 0 \(id 'qa-0'\): turn 1 .* is from 'human' but 'gpt' was expected"),
    Case("starts_with_gpt", QA_TRAIN, lambda d: _conv(d, 0, [{"from": G, "value": "<image>\nq"}, {"from": H, "value": "q2"}]), r"train\.json: record at index 0 \(id 'qa-0'\): turn 0 .* is from 'gpt' but 'human' was expected"),
    Case("ends_with_human", QA_TRAIN, lambda d: _conv(d, 0, [{"from": H, "value": "<image>\nq"}]), r"train\.json: record at index 0 \(id 'qa-0'\): 'conversations' ends with a human turn"),
    Case("missing_image_train", QA_TRAIN, lambda d: _train_rec(d, 1, image="ToyQA/images/nope.png"), r"train\.json: record at index 1 \(id 'qa-1'\): the image .*nope\.png does not exist"),
    Case("missing_image_test", QA_TEST, lambda d: _train_rec(d, 2, image="ToyQA/gone/2.png"), r"test\.json: record at index 2 \(id '2'\): the image .*gone.2\.png does not exist"),
    Case("duplicate_ids", QA_TRAIN, lambda d: _train_rec(d, 2, id="qa-0"), r"train\.json: record at index 2 \(id 'qa-0'\): duplicate id 'qa-0', already used by the record at index 0"),
    Case("duplicate_question_ids", QA_TEST, lambda d: _train_rec(d, 2, question_id="1"), r"test\.json: record at index 2 \(id '1'\): duplicate question_id '1', already used by the record at index 1"),
    Case("empty_train", QA_TRAIN, lambda d: [], r"task 'ToyQA' has no training records in .*train\.json"),
    Case("empty_test", QA_TEST, lambda d: [], r"task 'ToyQA' has no test records in .*test\.json"),
    Case("ref_count_mismatch", CAP_REFS_FILE, lambda d: {"images": d["images"][:2], "annotations": [a for a in d["annotations"] if a["image_id"] <= 2]}, r"refs\.json has 2 images but the test file .*CapDir.test\.json has 3 records", spec=CAP),
    Case("ref_count_mismatch_with_limit", CAP_REFS_FILE, lambda d: {"images": d["images"][:2], "annotations": [a for a in d["annotations"] if a["image_id"] <= 2]}, r"refs\.json has 2 images but .*test\.json has 3 records", spec=CAP, test_limit=2),
    Case("ref_unknown_image_id", CAP_REFS_FILE, lambda d: {**d, "annotations": d["annotations"] + [{"image_id": 99, "caption": "x"}]}, r"refs\.json: annotation at index 6: image_id 99 is not the id of any entry", spec=CAP),
    Case("ref_image_without_caption", CAP_REFS_FILE, lambda d: {**d, "annotations": [a for a in d["annotations"] if a["image_id"] != 2]}, r"refs\.json: image id 2 \(matched to test question_id 't1'\) has no caption", spec=CAP),
    Case("ref_not_coco", CAP_REFS_FILE, lambda d: d["images"], r"refs\.json must hold a JSON object", spec=CAP),
    Case("missing_train_file", QA_TRAIN, None, r"training file .*train\.json does not exist; the folder .*ToyQA contains: test\.json", delete=QA_TRAIN),
    Case("missing_refs_file", CAP_REFS_FILE, None, r"caption reference file .*refs\.json does not exist; the folder .*CapDir contains: test\.json, train_brief\.json", spec=CAP, delete=CAP_REFS_FILE),
    Case("corrupt_image", QA_IMAGE_1, None, r"train\.json: record at index 1 \(id 'qa-1'\): the image .*1\.png cannot be read as an image \(UnidentifiedImageError", image=lambda p: p.write_bytes(b"<html>404 Not Found</html>")),
    Case("empty_image_file", QA_IMAGE_1, None, r"record at index 1 \(id 'qa-1'\): the image .*1\.png cannot be read as an image", image=lambda p: p.write_bytes(b"")),
    Case("huge_image", QA_IMAGE_1, None, r"train\.json: record at index 1 \(id 'qa-1'\): the image .*1\.png is 100x80 = 8,000 pixels, more than data\.max_image_pixels=5,000", image=_big, max_image_pixels=5000),
    Case("truncated_image", QA_IMAGE_1, None, r"The image .*1\.png of record 'qa-1' cannot be decoded \(OSError: .*truncated.*data\.on_bad_record=skip", image=_truncate, decode=True),
    Case("missing_task_folder", QA_TRAIN, None, r"train\.json does not exist; the folder .*ToyQA does not exist \(the folder .*instructions contains: CapDir/\)", delete="instructions/ToyQA"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(tree: Path, case: Case) -> None:
    target = tree / case.file
    if case.image is not None:
        case.image(target)
    elif case.delete is not None:
        victim = tree / case.delete
        if victim.is_dir():
            for f in victim.iterdir():
                f.unlink()
            victim.rmdir()
        else:
            victim.unlink()
    elif case.mutate is None:
        target.write_text(case.raw)
    else:
        write_json_atomic(target, case.mutate(json.loads(target.read_text())))
    with pytest.raises(DataFormatError, match=case.match) as info:
        task = load_task(tree, case.spec, test_limit=case.test_limit, max_image_pixels=case.max_image_pixels)
        if case.decode:  # loading passed (the header reads); the collator meets the fault
            for record in task.train:
                load_image(record.image, None, record.id)
    msg = str(info.value)
    assert target.name in msg
    assert "\n" not in msg  # one paragraph


def test_loaders_directly_name_file_and_record(tree: Path) -> None:
    """The file-level loaders (not only load_task) report the same way, with check_images on."""
    path = tree / QA_TEST
    data = json.loads(path.read_text())
    data[1]["image"] = "ToyQA/images/missing.png"
    write_test_file(path, data)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + r": record at index 1 \(id 1\): the image"):
        load_test_file(path, tree / "datasets")
    test = load_test_file(path, tree / "datasets", check_images=False)
    refs = tree / "two.json"
    write_caption_references(refs, ["a", "b"], [["x"], ["y"]])
    with pytest.raises(DataFormatError, match=r"two\.json has 2 images but the test records has 3 records"):
        load_caption_references(refs, test)


# --------------------------------------------------------------------------------------------
# Images in other modes; data.on_bad_record=skip
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, value, expected", [
    ("L", 100, (100, 100, 100)),
    ("RGBA", (10, 20, 30, 0), (10, 20, 30)),
    ("P", 0, (0, 0, 0)),
    ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
    ("I;16", 32896, (128, 128, 128)),  # 16-bit mid grey: scaled, not clipped to white
    ("F", 0.5, (128, 128, 128)),  # float images in [0, 1] scale by 255 (larger ones by their maximum)
])
def test_images_in_other_modes_load_as_rgb(tmp_path, mode, value, expected):
    path = tmp_path / ("x.tif" if mode in ("I;16", "F", "CMYK") else "x.png")
    Image.new(mode, (6, 4), value).save(path)
    image = load_image(path, None)
    assert image.mode == "RGB" and image.size == (6, 6)  # padded to a square
    assert image.getpixel((3, 2)) == expected


def test_on_bad_record_skip_leaves_bad_records_out_and_says_which(tree: Path) -> None:
    qa_train = tree / QA_TRAIN
    write_json_atomic(qa_train, _drop(json.loads(qa_train.read_text()), 0, "conversations"))
    (tree / QA_IMAGE_1).write_bytes(b"garbage")  # train record 1 and test record 1
    _truncate(tree / "datasets/ToyQA/images/2.png")  # header fine, pixels not: found by the full decode
    bad = []
    task = load_task(tree, QA, on_bad_record="skip", skipped=bad)
    assert [r.id for r in task.train] == ["7"]
    assert [r.question_id for r in task.test] == ["0"]
    assert sorted((Path(b.file).name, b.id) for b in bad) == [
        ("test.json", "1"), ("test.json", "2"), ("train.json", "qa-0"), ("train.json", "qa-1"), ("train.json", "qa-2")]
    reasons = {b.id: b.reason for b in bad if b.file.endswith("train.json")}
    assert "missing the key(s) 'conversations'" in reasons["qa-0"]
    assert "cannot be read as an image" in reasons["qa-1"]
    assert "cannot be read as an image (OSError" in reasons["qa-2"] and "truncated" in reasons["qa-2"]


def test_skip_keeps_caption_references_matched_by_position(tree: Path) -> None:
    """A malformed caption test record is left out; the others keep their own references."""
    cap_test = tree / CAP_TEST
    write_json_atomic(cap_test, _train_rec(json.loads(cap_test.read_text()), 1, text=5))
    bad = []
    task = load_task(tree, CAP, on_bad_record="skip", skipped=bad)
    assert [r.question_id for r in task.test] == ["t0", "t2"]
    assert task.references == {"t0": CAP_REFS[0], "t2": CAP_REFS[2]}
    assert [(b.index, b.id) for b in bad] == [(1, "t1")]


def test_skip_with_every_record_bad_is_an_error(tree: Path) -> None:
    qa_test = tree / QA_TEST
    write_json_atomic(qa_test, [{"question_id": i} for i in range(3)])
    with pytest.raises(DataFormatError, match=r"Every record of .*test\.json is bad \(3 left out under data\.on_bad_record=skip\)"):
        load_task(tree, QA, on_bad_record="skip", skipped=[])
    with pytest.raises(ConfigError, match=r"data\.on_bad_record='ignore'; choose one of \('error', 'skip'\)"):
        load_task(tree, QA, on_bad_record="ignore")
