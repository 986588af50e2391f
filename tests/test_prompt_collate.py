"""The vicuna_v1 template, label masking and padding."""

import torch

from hide.data.collate import IGNORE_INDEX, Encoder, EvalCollator, TrainCollator, expand2square
from hide.data.formats import TestRecord, TrainRecord, Turn
from hide.data.prompt import SYSTEM, conversation_segments, generation_prompt


def test_template_text():
    turns = [Turn("What is it?", "a star"), Turn("And the color?", "red")]
    text = "".join(t for t, _ in conversation_segments(turns))
    assert text == (
        f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT: a star</s>USER: And the color? ASSISTANT: red</s>"
    )
    assert [target for _, target in conversation_segments(turns)] == [False, True, False, True]
    assert generation_prompt("What is it?") == f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT:"
    assert SYSTEM.startswith("A chat between a curious human and an artificial intelligence assistant.")


def _encoder(backbone):
    return Encoder(backbone.tokenizer, backbone.image_processor, backbone.image_seq_length)


def test_labels_only_on_answers(tiny_backbone, tmp_path):
    from PIL import Image

    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "a.png")
    record = TrainRecord("r1", tmp_path / "a.png", [Turn("what is the object in the image ?", "star"),
                                                     Turn("what color ?", "it is red")])
    encoder = _encoder(tiny_backbone)
    tok = tiny_backbone.tokenizer
    input_ids, labels = encoder.training_example(record)
    assert len(input_ids) == len(labels)
    # exactly the answers and their </s> are supervised, in order
    supervised = [i for i, l in zip(input_ids, labels) if l != IGNORE_INDEX]
    assert tok.decode(supervised, skip_special_tokens=False).split() == ["star", "</s>", "it", "is", "red", "</s>"]
    assert all(l in (IGNORE_INDEX, i) for i, l in zip(input_ids, labels))
    # <image> expanded to one token per image feature, once
    assert input_ids.count(tiny_backbone.image_token_id) == tiny_backbone.image_seq_length
    # the generation prompt is exactly the training prefix before the first answer
    prompt = encoder.prompt_ids("what is the object in the image ?")
    assert input_ids[: len(prompt)] == prompt
    assert labels[len(prompt)] != IGNORE_INDEX and labels[len(prompt) - 1] == IGNORE_INDEX


def test_padding_sides(tiny_backbone, tmp_path):
    from PIL import Image

    Image.new("RGB", (16, 16), (0, 0, 255)).save(tmp_path / "b.png")
    encoder = _encoder(tiny_backbone)
    pad = tiny_backbone.tokenizer.pad_token_id
    train = TrainCollator(encoder)([(0, TrainRecord("s", tmp_path / "b.png", [Turn("q", "a")])),
                                    (1, TrainRecord("l", tmp_path / "b.png", [Turn("q q q q", "a b c")]))])
    assert train["input_ids"][0, -1] == pad and train["attention_mask"][0, -1] == 0  # right padding
    assert (train["labels"][train["attention_mask"] == 0] == IGNORE_INDEX).all()
    assert train["task"].tolist() == [0, 1]
    size = tiny_backbone.image_processor.crop_size["height"]
    assert train["pixel_values"].shape == (2, 3, size, size)
    evaluation = EvalCollator(encoder)([(0, TestRecord("1", tmp_path / "b.png", "q", "a")),
                                        (0, TestRecord("2", tmp_path / "b.png", "q q q q", "a"))])
    assert evaluation["input_ids"][0, 0] == pad and evaluation["attention_mask"][0, 0] == 0  # left padding
    assert (evaluation["attention_mask"][:, -1] == 1).all()
    assert evaluation["ids"] == ["1", "2"]


def test_expand2square_pads_with_mean_color():
    from PIL import Image

    image = Image.new("RGB", (30, 10), (255, 255, 255))
    square = expand2square(image, (1, 2, 3))
    assert square.size == (30, 30)
    assert square.getpixel((0, 0)) == (1, 2, 3) and square.getpixel((15, 15)) == (255, 255, 255)
