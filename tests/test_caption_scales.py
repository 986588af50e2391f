"""experiments/caption_scales.py on the fast config's benchmark: the scores of captions written
without a model, under the fixed references and captioners' varied ones."""

import json
import sys

from conftest import FAST, ROOT

sys.path.insert(0, str(ROOT / "experiments"))
import caption_scales  # noqa: E402

sys.path.pop(0)


def test_one_form_names_every_object_with_its_colour():
    assert caption_scales.one_form([{"color": "red", "kind": "cup"}]) == "a red cup on a table"
    assert (caption_scales.one_form([{"color": "red", "kind": "cup"}, {"color": "blue", "kind": "book"}])
            == "a red cup and a blue book on a table")


def test_caption_scales_order_chance_a_form_and_the_references_own_wording(tmp_path):
    rows = caption_scales.main([*FAST, "--color-shares", "0.5", "--out", str(tmp_path)])
    fixed, varied = rows
    assert fixed["object_captions"] == "fixed" and varied == {**varied, "object_captions": "varied",
                                                              "object_caption_color_share": 0.5}
    assert fixed["test_images"] == varied["test_images"] > 0
    # under the fixed references the first reference is matched word for word: no caption scores more
    assert fixed["another_captioner"] > fixed["one_form"] > fixed["chance"]
    # varied references: no wording is matched by every image's references, so both fall
    assert varied["another_captioner"] < fixed["another_captioner"] and varied["one_form"] < fixed["one_form"]
    assert varied["chance"] < varied["another_captioner"]
    assert json.loads((tmp_path / "caption_scales.json").read_text()) == rows
    assert len((tmp_path / "caption_scales.md").read_text().splitlines()) == 2 + len(rows)
