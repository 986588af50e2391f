"""Caption-like English for the caption_scoring benchmark, written offline from a seeded grammar:
capitals, commas, full stops, question and exclamation marks, semicolons, colons, quotes,
parentheses, hyphenated words, ellipses, dashes, numbers, possessives and contractions (n't, 's,
're, 've, 'll, 'd, 'm), as in COCO's human captions. Each image has 5 references and 1
prediction that shares some of their words, so every metric has matches to count."""

from __future__ import annotations

import random

SUBJECTS = ["a man", "a woman", "two dogs", "the little girl", "an old truck", "a group of people", "three kids",
            "a black-and-white cat", "the baseball player", "a young boy", "some sheep", "a red double-decker bus",
            "the chef", "a surfer", "two zebras", "a giraffe", "the children", "a skier", "an elephant", "the horse"]
VERBS = ["is riding", "is standing next to", "are playing with", "sits on", "is holding", "walks past", "looks at",
         "is eating", "runs across", "is parked near", "stands beside", "is flying over", "leans against",
         "is carrying", "waits by"]
OBJECTS = ["a bicycle", "the kitchen counter", "a frisbee", "a large pizza", "the ocean waves", "a wooden bench",
           "a snowy hill", "the traffic light", "an umbrella", "a tennis racket", "the train station", "a laptop",
           "some vegetables", "a fire hydrant", "the open field", "a stop sign", "a cake with 3 candles",
           "the city street", "a teddy bear", "a plate of food"]
EXTRAS = ["in the rain", "on a sunny day", "at night", "near the water", "in a busy city", "under a blue sky",
          "with 2 friends", "during the game", "in front of a building", "on the grass"]
CONTRACTED = ["it's", "there's", "they're", "we've", "isn't", "doesn't", "can't", "won't", "didn't", "he's",
              "she'll", "i'd", "i'm", "you're", "that's", "aren't", "wasn't", "couldn't", "who's", "let's"]
OPENERS = ["Look:", "Wow!", "Well,", "Hmm...", "Honestly,", "Note:", "Okay --", "Yes;"]
QUOTED = ['"fun"', '"big"', "(maybe)", "(probably)", '"old-fashioned"', "(left)", '"happy"']


def caption(rng: random.Random, subject: str, verb: str, obj: str) -> str:
    words = [subject, verb, obj]
    if rng.random() < 0.5:
        words.append(rng.choice(EXTRAS))
    text = " ".join(words)
    roll = rng.random()
    if roll < 0.2:
        text = f"{rng.choice(CONTRACTED)} {text}"
    elif roll < 0.35:
        text = f"{rng.choice(OPENERS)} {text}"
    if rng.random() < 0.3:
        text = text.replace(" ", f" {rng.choice(QUOTED)} ", 1) if rng.random() < 0.5 else f"{text}, {rng.choice(CONTRACTED)} nice"
    if rng.random() < 0.2:
        owner = rng.choice(["the dog's", "a man's", "the girl's", "people's", "the city's"])
        text = f"{text} beside {owner} {rng.choice(['car', 'house', 'toy', 'bag'])}"
    if rng.random() < 0.15:
        text = f"{text}; {rng.choice(CONTRACTED)} {rng.choice(['great', 'odd', 'sunny', 'crowded'])}"
    text = text[0].upper() + text[1:]
    return text + rng.choice([".", ".", ".", "!", "?", "...", "", " ."])


def corpus(num_images: int = 3000, refs_per_image: int = 5, seed: int = 0) -> tuple[dict, dict]:
    """({image id: prediction}, {image id: [reference, ...]})."""
    rng = random.Random(seed)
    predictions, references = {}, {}
    for i in range(num_images):
        subject, verb, obj = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)
        refs = []
        for _ in range(refs_per_image):  # the references mostly agree on the scene, with variation
            refs.append(caption(rng, subject if rng.random() < 0.7 else rng.choice(SUBJECTS),
                                verb if rng.random() < 0.6 else rng.choice(VERBS),
                                obj if rng.random() < 0.7 else rng.choice(OBJECTS)))
        predictions[f"img{i}"] = caption(rng, subject if rng.random() < 0.6 else rng.choice(SUBJECTS),
                                         rng.choice(VERBS), obj if rng.random() < 0.5 else rng.choice(OBJECTS))
        references[f"img{i}"] = refs
    return predictions, references
