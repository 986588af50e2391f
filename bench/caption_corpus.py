"""Caption-like English for the caption tests and the caption_scoring benchmark, written offline
from a seeded grammar.

`corpus`: capitals, commas, full stops, question and exclamation marks, semicolons, colons,
quotes, parentheses, hyphenated words, ellipses, dashes, numbers, possessives and contractions
(n't, 's, 're, 've, 'll, 'd, 'm), as in COCO's human captions; all of it inside
`hide.metrics.ptb`'s safe class. Each image has 5 references and 1 prediction that shares some of
their words, so every metric has matches to count.

`mixed_corpus`: the same captions with the cases where Stanford's PTB tokenizer looks past a
word: abbreviations before numbers ("No. 5", "St. 3"), punctuation runs ("mat., looking",
"wow!!!", "...?"), emoticons (":)", ":-(", ";)"), single capitals before a full stop ("vitamin
C.") at the end of an image's last reference or prediction, followed by an image whose first
caption starts with a lower-case letter, a capital or a digit, so that the tokens depend on the
neighbouring line."""

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


# Captions whose tokens depend on the line after them: put last, before a chosen first word.
LINE_ENDS = ["A bottle of vitamin C.", "He takes vitamin C.", "The bus is No.", "A small shop on St.", "It is plan B.",
             "A grade of A.", "A smiling girl ;)", "A happy dog :)", "A sad face :-(", "The house is No.",
             "See fig.", "A photo from Jan."]
# Captions with the other cases inside them
INSIDE = ["No. 5 is painted on the bus.", "A bus on St. 3 near the park.", "The jersey says No. 12!",
          "Fig. 2 shows a cat.", "A cat sits on a mat., looking up.", "Wow!!! A huge wave.", "What is this...?",
          "Really?! A cat on a roof.", "A happy dog :) in the grass.", "A sad clown :-( with a balloon.",
          "A man winks ;) at the camera.", "Mr. Smith's red car.", "The U.S. flag on a pole.", "A 3.5 inch screen.",
          "A sign with 555 1234 on it.", "Two dogs (xx) playing.", "Vitamin C. The label is orange.",
          "vitamin C. the label is orange.", "A can of paint, no. 7 on the lid.", "A dog!!! A cat???"]
# First words for the caption after a LINE_ENDS one: lower case, capital, digit
FOLLOWERS = ["the label is orange.", "The label is orange.", "5 dogs run in a park.", "a man rides a bike.",
             "3 kids play soccer.", "About ten people wait.", "it is a sunny day."]


def mixed_corpus(num_images: int = 3000, refs_per_image: int = 5, seed: int = 0) -> tuple[dict, dict]:
    """`corpus` with the cases above in about a third of its images, each list taken in turn so
    that a hundred images hold every one of them (see the module's docstring):
    ({image id: prediction}, {image id: [reference, ...]}), image ids 1..N."""
    rng = random.Random(seed)
    predictions, references = corpus(num_images, refs_per_image, seed)
    predictions = {i + 1: p for i, p in enumerate(predictions.values())}
    references = {i + 1: list(r) for i, r in enumerate(references.values())}
    turn: dict[str, int] = {}

    def next_of(name: str, cases: list[str]) -> str:
        turn[name] = turn.get(name, -1) + 1
        return cases[turn[name] % len(cases)]

    for i in range(1, num_images + 1):
        refs = references[i]
        if rng.random() < 0.3:
            refs[-1] = next_of("reference end", LINE_ENDS)
            if i < num_images:
                references[i + 1][0] = next_of("reference follower", FOLLOWERS)
        if rng.random() < 0.2:
            refs[rng.randrange(1, refs_per_image - 1)] = next_of("reference inside", INSIDE)
        roll = rng.random()
        if roll < 0.15:
            predictions[i] = next_of("prediction end", LINE_ENDS)
            if i < num_images:
                predictions[i + 1] = next_of("prediction follower", FOLLOWERS)
        elif roll < 0.3:
            predictions[i] = next_of("prediction inside", INSIDE)
    return predictions, references
