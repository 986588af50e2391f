"""A procedurally generated six-task benchmark that mirrors UCIT, small enough for the tiny LLaVA.

Each task is an analog of one UCIT task, in UCIT's order, written in UCIT's on-disk layout
(`datasets/<Task>/{train,test}/<n>.png`, `instructions/<Task>/{train,test}.json` and, for the
caption tasks, `test_coco_refs.json` in COCO format):

| task          | UCIT analog          | kind    | what is asked                                        |
| Renditions    | ImageNet-R           | qa      | which of 10 shapes, drawn in one of 7 renditions     |
| FigureQA      | ArxivQA              | qa (MC) | which bar of a bar chart is the tallest              |
| ObjectCaption | VizWiz-Caption       | caption | one or two coloured objects on a table               |
| IconQA        | IconQA               | qa      | count icons of one kind (digit) / most frequent (MC) |
| ClevrMath     | CLEVR-Math           | qa      | "Subtract all red cubes. How many objects are left?",|
|               |                      |         | "Add 2 blue spheres. How many objects are there?"    |
| SceneCaption  | Flickr30k (brief)    | caption | an outdoor scene: sky, trees, house, person, water   |

The answer formats are shared the way UCIT shares them (letters for FigureQA and IconQA's
multiple choice, digits for IconQA's counting and ClevrMath), so that learning one task can
interfere with another. `generate_mixture` writes the base model's own instruction-tuning mixture,
as LLaVA-1.5's own instruction data is to UCIT: the same visual primitives under other
instructions, in sentences ("it is red", number words, yes/no) and in the tasks' answer formats
(one word, a digit, an option's letter, a one-sentence caption), and the tasks' own instructions
about scenes their tasks never draw ("What is the object in the image?" about a table top's one
object; `mixture.task_format_turns`). It holds none of the test images (test and mixture images
come from two halves of the image space, `build.image_half`); its captions are phrased its own
way, but it names six of
Renditions' ten classes and draws the tasks' kinds of scene: `experiments/mixture_overlap.py`
measures what it shares with each test set (docs/benchmark.md).

Layouts are patch-friendly for a ViT trained from scratch (64 px images, 8- or 16-px patches): a
4x4 layout grid of cells of image_size/4 px (at 64 px one 16-px patch, or 2x2 8-px patches) holds
the objects. FigureQA's 4 bars stand in their own column cells and grow from the bottom edge;
ClevrMath puts each object in its own cell (70-78% of a cell, jitter at most 8% of a cell); IconQA
is always a 4x4 grid over the whole canvas, one icon (75% of a cell) per occupied cell: its
counting images hold one kind of icon (as IconQA's do), its multiple-choice ones three kinds; Renditions
draws one large object (55-85% of the canvas) near the centre, with strokes of at least
image_size/16 so that outlines and dots survive the downsampling. The two caption tasks are free
scenes. The mixture uses the same layouts (its multi-shape scenes put shapes in 2x2-cell blocks) and is
weighted towards what the vision tower learns slowly: single shapes (nearly every one of a class
the mixture names is named), bar heights and counts; its multiple-choice questions are weighted up,
the format a tiny language model learns last. A mixture conversation asks up to
MIXTURE_TURNS questions about its image; `mixture_cell_labels` and `mixture_counts` give the vision
tower's dense pretraining what each layout cell holds and how many objects of each kind there are.

Images are drawn at 4x resolution with PIL and downsampled with LANCZOS. Everything is a function
of the seed: every sample has its own random stream, derived from (seed, task, split, index), so
that generating a subset of the tasks, or fewer samples, gives the same data for what is generated.
The texts use a closed vocabulary (`vocabulary()`) for the word-level tokenizer of the tiny model;
answers are written as that tokenizer decodes them (punctuation surrounded by spaces).
Every record keeps the scene it was drawn from under an extra key "meta" (the loaders ignore it).

One module per task (`renditions`, `figureqa`, `object_caption`, `iconqa`, `clevr_math`,
`scene_caption`) holds all of it: its words and texts, its scenes, its sampler, its pretraining
counterpart family, the vision-pretraining targets of that family's scenes and its chance level,
under the same names in each (`tasks` lists them). `texts` holds the vocabulary and the words the
tasks share, `draw` the drawing primitives they share, `mixture` the mixture of the families and
`build` the writing of the files.
"""

# The names the rest of the project and the tests use.
from hide.data.synth.build import (
    GENERATOR_VERSION,
    MARKER,
    MIXTURE,
    MIXTURE_STREAM,
    MIXTURE_VERSION,
    generate_benchmark,
    generate_mixture,
)
from hide.data.synth.clevr_math import (
    CLEVR_ANSWER_RANGE,
    CLEVR_COLORS,
    CLEVR_MAX_ADD,
    CLEVR_PLURALS,
    CLEVR_SHAPES,
    clevr_matches,
)
from hide.data.synth.draw import EMPTY_CELL, GRID
from hide.data.synth.iconqa import (
    ICON_COLORS,
    ICON_COUNT_MAX,
    ICON_KINDS,
    ICON_MC_KINDS,
    ICON_MC_MARGIN,
    ICON_PLURALS,
)
from hide.data.synth.mixture import mixture_cell_labels, mixture_counts
from hide.data.synth.renditions import RENDITION_SIZE, RENDITIONS, SHAPES
from hide.data.synth.tasks import SYNTH_TASKS, TASK_NAMES, TASKS, chance_level
from hide.data.synth.texts import COLORS, NUMBER_WORDS, vocabulary
