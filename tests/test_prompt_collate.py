"""The conversation templates, the prompt's token ids, label masking and padding."""

import torch

from hide.data.collate import IGNORE_INDEX, Encoder, EvalCollator, TrainCollator, expand2square
from hide.data.formats import TestRecord, TrainRecord, Turn
from hide.models.llava import TINY_V1

SYSTEM = TINY_V1.system  # the shipped tiny backbone's template: the one it was instruction-tuned with


def test_template_text():
    turns = [Turn("What is it?", "a star"), Turn("And the color?", "red")]
    text = "".join(t for t, _ in TINY_V1.segments(turns))
    assert text == (
        f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT: a star</s>USER: And the color? ASSISTANT: red</s>"
    )
    assert [target for _, target in TINY_V1.segments(turns)] == [False, True, False, True]
    assert TINY_V1.generation_prompt("What is it?") == f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT:"
    assert SYSTEM.startswith("A chat between a curious human and an artificial intelligence assistant.")


def _encoder(backbone):
    return Encoder.for_backbone(backbone)


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


def test_vicuna_v1_is_llava_1_5s_conversation():
    """LLaVA's llava/conversation.py:252-262 (conv_vicuna_v1: system, roles USER/ASSISTANT, sep " ",
    sep2 "</s>") and get_prompt's SeparatorStyle.TWO branch (lines 51-60): with the image,
    model_answer.py:45 puts "<image>\\n" before the question."""
    from hide.models.llava import VICUNA_V1

    system = ("A chat between a curious user and an artificial intelligence assistant. "
              "The assistant gives helpful, detailed, and polite answers to the user's questions.")
    assert VICUNA_V1.generation_prompt("What is it?") == f"{system} USER: <image>\nWhat is it? ASSISTANT:"
    turns = [Turn("What is it?", "a star"), Turn("And the color?", "red")]
    assert "".join(t for t, _ in VICUNA_V1.segments(turns)) == (
        f"{system} USER: <image>\nWhat is it? ASSISTANT: a star</s>USER: And the color? ASSISTANT: red</s>")
    # a text-only record: no image token
    assert VICUNA_V1.generation_prompt("2 + 2?", image=False) == f"{system} USER: 2 + 2? ASSISTANT:"


def test_a_checkpoint_keeps_its_template(tiny_backbone, tmp_path):
    """The shipped tiny backbone reads tiny_v1 from its folder; a checkpoint without a template file
    (a llava-hf one) gets vicuna_v1; model.template names another."""
    from hide.data.prompt import TEMPLATE_FILE
    from hide.models.llava import VICUNA_V1
    from hide.models.backbone import load_pretrained_backbone

    assert tiny_backbone.template == TINY_V1
    tiny_backbone.model.save_pretrained(tmp_path)
    tiny_backbone.tokenizer.save_pretrained(tmp_path)
    tiny_backbone.image_processor.save_pretrained(tmp_path)
    assert not (tmp_path / TEMPLATE_FILE).exists()
    assert load_pretrained_backbone(str(tmp_path)).template == VICUNA_V1
    TINY_V1.save(tmp_path)
    assert load_pretrained_backbone(str(tmp_path)).template == TINY_V1
    assert load_pretrained_backbone(str(tmp_path), template="vicuna_v1").template == VICUNA_V1


def test_prompt_ids_are_the_chunked_tokenisation(tiny_backbone):
    """LLaVA's llava/mm_utils.py:43-62 (tokenizer_image_token): each side of "<image>" is tokenised
    on its own (line 44), the BOS of the first kept (lines 51-53), the image token between (line 55).
    On the tiny tokenizer that equals tokenising the whole prompt, image tokens expanded, at once."""
    encoder = _encoder(tiny_backbone)
    tok = tiny_backbone.tokenizer
    image = tiny_backbone.image_token_id
    for question in ["what is the object in the image ?", "how many red cubes are there ?", "caption it ."]:
        prompt = TINY_V1.generation_prompt(question)
        before, after = prompt.split("<image>")
        chunked = ([tok.bos_token_id] + tok(before, add_special_tokens=False)["input_ids"]
                   + [image] * tiny_backbone.image_seq_length + tok(after, add_special_tokens=False)["input_ids"])
        assert encoder.prompt_ids(question) == chunked
        whole = tok(prompt.replace("<image>", "<image>" * tiny_backbone.image_seq_length),
                    add_special_tokens=False)["input_ids"]
        assert chunked == [tok.bos_token_id] + whole


def test_text_only_records_have_no_image(tiny_backbone, tmp_path):
    from PIL import Image

    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "a.png")
    collate = EvalCollator(_encoder(tiny_backbone), prompt_suffix=" what color ?", max_new_tokens=3)
    batch = collate([(0, TestRecord("q1", tmp_path / "a.png", "what is it ?", "x")),
                     (0, TestRecord("q2", None, "how many cubes ?", "4"))])
    assert batch["pixel_values"].shape[0] == 1  # one image for the one record that has one
    assert batch["has_image"].tolist() == [True, False]
    image = tiny_backbone.image_token_id
    assert (batch["input_ids"][0] == image).sum() == tiny_backbone.image_seq_length
    assert (batch["input_ids"][1] == image).sum() == 0
    assert batch["max_new_tokens"] == 3
    assert tiny_backbone.tokenizer.decode(batch["input_ids"][1][batch["attention_mask"][1].bool()]).endswith(
        "questions . user : how many cubes ? what color ? assistant :")
    only_text = collate([(0, TestRecord("q2", None, "what ?", "4"))])
    assert only_text["pixel_values"] is None


def test_a_template_file_in_vicuna_fields_reads_as_the_same_conversation(tmp_path):
    """A template file that keeps LLaVA's Conversation fields (roles and separators, as
    llava/conversation.py's conv_vicuna_v1: sep " ", sep2 "</s>") reads as the format strings."""
    import json

    from hide.data.prompt import TEMPLATE_FILE, load_template

    (tmp_path / TEMPLATE_FILE).write_text(json.dumps({"name": "tiny_v1", "system": SYSTEM, "user": "USER",
                                                      "assistant": "ASSISTANT", "sep": " ", "sep2": "</s>"}))
    read = load_template(tmp_path, default=None)
    assert read == TINY_V1
    turns = [Turn("What is it?", "a star"), Turn("And the color?", "red")]
    assert "".join(t for t, _ in read.segments(turns)) == (
        f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT: a star</s>USER: And the color? ASSISTANT: red</s>")
