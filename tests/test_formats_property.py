"""Property: whatever JSON a training or test file holds, the loaders return valid records or raise
the project's own DataFormatError, never another exception."""

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hide.data.formats import DataFormatError, load_test_file, load_train_file

ROOT = Path(tempfile.mkdtemp(prefix="hide-property-"))
(ROOT / "datasets").mkdir()
Image.new("RGB", (8, 8)).save(ROOT / "datasets" / "a.png")

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                    st.sampled_from(["", "a.png", "missing.png", "<image>", "<image>\nq", "human", "gpt", "x"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                           max_leaves=10)
VALID_TRAIN = {"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                                   {"from": "gpt", "value": "A"}]}
VALID_TEST = {"image": "a.png", "text": "What?", "answer": "A"}


def near(valid: dict, id_key: str):
    """A valid record with a fresh id, and with probability 1/2 one key dropped or replaced."""
    keys = sorted([*valid, id_key])

    @st.composite
    def record(draw):
        rec = {**valid, id_key: draw(st.integers(0, 10_000))}
        if draw(st.booleans()):
            key = draw(st.sampled_from(keys))
            if draw(st.booleans()):
                del rec[key]
            else:
                rec[key] = draw(json_values)
        return rec

    return record()


train_record = st.one_of(near(VALID_TRAIN, "id"), json_values)
test_record = st.one_of(near(VALID_TEST, "question_id"), json_values)


def _load(loader, content) -> None:
    with tempfile.TemporaryDirectory(dir=ROOT) as folder:
        path = Path(folder) / "file.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        try:
            records = loader(path, ROOT / "datasets")
        except DataFormatError as error:
            assert str(path) in str(error) or "file.json" in str(error)
            return
        assert records and all(Path(r.image).is_file() for r in records)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(train_record, max_size=4), json_values, st.text(max_size=20)))
def test_train_loader_answers_any_content_with_a_record_or_its_own_error(content):
    _load(load_train_file, content)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(test_record, max_size=4), json_values, st.text(max_size=20)))
def test_test_loader_answers_any_content_with_a_record_or_its_own_error(content):
    _load(load_test_file, content)
