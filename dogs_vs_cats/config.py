"""params.yaml: its one schema (every key's type, range, allowed values and the rules
between keys) and `load_params`, which reads it as DVC does (YAML 1.2: `5e-05` is a
number), checks it once and hands it over typed (`params.train_head.lr`).

The schema is the only place a param is checked: what it accepts, the code runs with.
It holds no defaults, so it cannot change an output (see tests/test_deps.py).
"""

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator, StrictBool, StrictFloat, StrictInt, StrictStr

from dogs_vs_cats.catalog import IMAGE_MODELS, VGG16_LAYERS
from dogs_vs_cats.errors import StageError

PARAMS_FILE = Path("params.yaml")

Count = Annotated[StrictInt, Field(ge=1)]
Epochs = Annotated[StrictInt, Field(ge=1)]
Seed = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]  # what NumPy and Keras accept
Rate = Annotated[Union[StrictInt, StrictFloat], Field(gt=0)]  # a learning rate
Fraction = Annotated[Union[StrictInt, StrictFloat], Field(ge=0, lt=1)]  # dropout, smoothing
Precision = Literal["auto", "float32", "bfloat16", "mixed_float16"]
Distribute = Literal["none", "mirrored"]
# Several machines, each running the stage's cmd with its TF_CONFIG (docs/scaling-out.md):
# the stages that train through VGG16 or its features, where the time goes.
MultiWorker = Literal["none", "mirrored", "multi_worker"]
Seconds = Annotated[StrictInt, Field(ge=1)]
Cache = Literal["auto", True, False]
Patience = Annotated[StrictInt, Field(ge=0)]
Views = Annotated[StrictInt, Field(ge=0)]  # 0: off
Vgg16Layer = Literal[VGG16_LAYERS]
SMALL_CONVNET_MIN_SIZE = 46  # image.size: the small convnet's four 3x3 convolutions, each followed by halving


class Section(BaseModel):
    # allow_inf_nan=False: `.inf`, `.nan` and `1e400` (YAML reads it as infinity) are refused
    # for every float key; an infinite learning rate would train a model of NaN weights.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class Configuration(Section):
    """Which conf/ options composed params.yaml (for `dvc exp show`); no stage reads it."""
    schedule: StrictStr
    levers: StrictStr


class Archived(Section):
    """A section whose `archive` names a zip (data, submission)."""
    archive: Annotated[StrictStr, Field(min_length=1)]
    KEY: ClassVar[str]
    EXAMPLE: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def archive_given(cls, values):
        """`archive` empty or null: dvc.yaml makes it a dependency, and DVC cannot read a
        pipeline with an empty path in it, so this is said before anything else."""
        if isinstance(values, dict) and "archive" in values and values["archive"] in (None, ""):
            raise ValueError(f"archive is {'null' if values['archive'] is None else 'empty'}: set it to the path "
                             f"of a zip ({cls.EXAMPLE}); until then every DVC command stops at \"ERROR: unexpected "
                             f"error\" (dvc.yaml makes {cls.KEY}.archive a dependency)")
        return values


class Data(Archived):
    KEY, EXAMPLE = "data", "data/sample/train.zip, or Kaggle's data/raw/dogs-vs-cats.zip"


class Sample(Section):
    per_class: Count
    seed: Seed
    min_side: Annotated[StrictInt, Field(ge=16)]  # pixels: smaller pictures cannot hold the drawing
    max_side: Count
    test_images: Count

    @model_validator(mode="after")
    def sides_in_order(self):
        if self.max_side < self.min_side:
            raise ValueError(f"max_side {self.max_side} is below min_side {self.min_side}")
        return self


class Split(Section):
    train: Union[Literal["all"], Count]  # all: every usable image outside validation and test
    validation: Count
    test: Count
    holdout_from: Annotated[StrictInt, Field(ge=0)]  # with train all: the number of the first held-out photo
    order: Literal["book", "random"]
    seed: Seed


class Image(Section):
    size: Annotated[StrictInt, Field(ge=32, le=512)]  # VGG16 halves it five times; 512 px is 12x the book's pixels

    @model_validator(mode="after")
    def small_convnet_fits(self):
        # Checked here, not when `scratch` builds the model after other stages ran.
        if self.size < SMALL_CONVNET_MIN_SIZE:
            raise ValueError(f"size is {self.size}, but the small convnet needs at least {SMALL_CONVNET_MIN_SIZE} "
                             f"(scratch and scratch_augmented: four 3x3 convolutions, each followed by halving)")
        return self


class Base(Section):
    weights: Annotated[StrictStr, Field(min_length=1)]  # imagenet, none or a file path
    preprocess: Literal["vgg16", "rescale"]
    seed: Seed  # of the random base (weights: none)


class Features(Section):
    batch_size: Count
    precision: Precision


class Augment(Section):
    rotation: Annotated[Union[StrictInt, StrictFloat], Field(ge=0, le=180)]
    width_shift: Annotated[Union[StrictInt, StrictFloat], Field(ge=0, lt=1)]
    height_shift: Annotated[Union[StrictInt, StrictFloat], Field(ge=0, lt=1)]
    shear: Annotated[Union[StrictInt, StrictFloat], Field(ge=0, lt=90)]
    zoom: Annotated[Union[StrictInt, StrictFloat], Field(ge=0, lt=1)]
    horizontal_flip: StrictBool


class Training(Section):
    epochs: Epochs
    batch_size: Count
    lr: Rate
    lr_schedule: Literal["constant", "cosine"]
    seed: Seed
    precision: Precision
    distribute: Distribute


class Validated(Training):
    """A training stage with a validation set, so it can stop early."""
    early_stopping: Patience


class Scratch(Validated):
    cache: Cache


class ScratchAugmented(Scratch):
    dropout: Fraction


def multi_worker_problem(section):
    """What a section that may train on several machines cannot combine with multi_worker."""
    if section.distribute == "multi_worker" and section.precision == "mixed_float16":
        # Keras' loss scaling skips a step whose gradients overflow, decided on each worker
        # before the gradients are summed: one worker would skip it and the other not.
        return ("precision is mixed_float16 but distribute is multi_worker, where a step one worker skips on "
                "an overflow the others take: set precision to float32 (or bfloat16)")
    return None


class SeveralMachines(Validated):
    """A stage that can train on several machines (`distribute: multi_worker`)."""
    distribute: MultiWorker
    worker_timeout: Seconds  # how long a worker waits for the others to start, or to answer, before it stops

    @model_validator(mode="after")
    def multi_worker_rules(self):
        problem = multi_worker_problem(self)
        if problem:
            raise ValueError(problem)
        return self


class TrainHead(SeveralMachines):
    units: Count
    dropout: Fraction


class Echoed(SeveralMachines):
    """A stage with a frozen-part cache, whose features can be reused: echoed, or drawn from a pool of views."""
    cache: Cache
    echo: Count  # 1: off
    views: Views

    @model_validator(mode="after")
    def reuse_needs_the_cache(self):
        if self.echo > 1 and self.views:
            raise ValueError(f"echo is {self.echo} and views is {self.views}: both reuse passes of augmented "
                             f"features, so set one of them off (echo 1 or views 0)")
        if self.distribute == "multi_worker" and self.cache is True:
            raise ValueError("cache is true but distribute is multi_worker: every worker trains on its own slice "
                             "of each batch end to end, so set cache to auto or false")
        # echo and views reuse cached features: what keeps the cache off rules them out
        without_cache = ("distribute is multi_worker, which trains end to end without the frozen-part cache, so"
                         if self.distribute == "multi_worker" else
                         "the cache is off: it reuses cached features, so set cache to true (or auto) or"
                         if self.cache is False else None)
        for name, value, off in (("echo", self.echo, 1), ("views", self.views, 0)):
            if value != off and without_cache:
                raise ValueError(f"{name} is {value} but {without_cache} set {name} to {off}")
        return self


class FeaturesAugmented(Echoed):
    units: Count


class Finetune(Echoed):
    start_from: Literal["features_augmented", "head"]
    frozen_epochs: Annotated[StrictInt, Field(ge=0)]
    frozen_lr: Rate
    unfreeze_from: Vgg16Layer

    @model_validator(mode="after")
    def unfreezes_a_conv_layer(self):
        # A pooling layer has no weights: from block5_pool, the last one, nothing of the base would train.
        if self.unfreeze_from.endswith("_pool"):
            raise ValueError(f"unfreeze_from is {self.unfreeze_from}, a pooling layer without weights: name the "
                             f"first conv layer to train (block5_conv1 fine-tunes block5, as the book)")
        return self


class Evaluate(Section):
    batch_size: Count


class Curves(Section):
    smoothing: Fraction


class Visualize(Section):
    image: Annotated[StrictInt, Field(ge=0)]
    layers: Annotated[list[Vgg16Layer], Field(min_length=1)]
    channels: Count
    filters: Count
    ascent_steps: Count
    ascent_size: Annotated[StrictInt, Field(ge=32, le=512)]
    gradcam_images: Count
    augmentations: Count
    most_wrong: Count
    seed: Seed


class Submission(Archived):
    KEY, EXAMPLE = "submission", "data/sample/test1.zip, or Kaggle's data/raw/dogs-vs-cats.zip"
    model: Literal[IMAGE_MODELS]  # the models that take pictures (catalog.MODELS)
    clip: Annotated[Union[StrictInt, StrictFloat], Field(ge=0, lt=0.5)]
    tta: Annotated[StrictInt, Field(ge=1, le=12)]
    batch_size: Count



class Mnist(Training):
    npz: StrictStr


class Params(Section):
    configuration: Configuration
    data: Data
    sample: Sample
    split: Split
    image: Image
    base: Base
    features: Features
    augment: Augment
    scratch: Scratch
    scratch_augmented: ScratchAugmented
    train_head: TrainHead
    features_augmented: FeaturesAugmented
    finetune: Finetune
    evaluate: Evaluate
    curves: Curves
    visualize: Visualize
    submission: Submission
    mnist: Mnist


def problems(params):
    """Every problem of `params` as 'key: what is wrong (got value)'; empty when it is valid."""
    from pydantic import ValidationError
    try:
        Params.model_validate(params)
    except ValidationError as e:
        found = {}
        for error in e.errors(include_url=False):
            # Union and Literal errors name each alternative; the key is the part before them.
            key = ".".join(str(part) for part in error["loc"]
                           if not str(part).startswith(("int", "float", "literal", "function", "constrained-")))
            if error["type"] == "missing":
                found[key] = f"{key}: missing"
            elif error["type"] == "extra_forbidden":
                found[key] = f"{key}: not a known key"
            elif error["type"] == "value_error":  # a rule between keys of a section: its message names them
                found[key] = f"{key}.{error['ctx']['error']}"
            else:  # a number's last alternative, float, says it best: keep the last message per key
                found[key] = f"{key}: {error['msg'].replace('Input should be', 'should be')} (got {error['input']!r})"
        return list(found.values())
    return []


def validate(params, path=PARAMS_FILE):
    """`params` (a mapping of sections) as typed Params; StageError naming every bad key in one line."""
    found = problems(params)
    if found:
        raise StageError(f"{path}: " + "; ".join(found) + ": fix these values (docs/params.md)")
    return Params.model_validate(params)


def yaml_problem(error):
    """What ruamel found and where (`line 5, column 1: found duplicate key "train_head"`): its
    first line is only the context, such as "while constructing a mapping"."""
    problem, mark = getattr(error, "problem", None), getattr(error, "problem_mark", None)
    if not problem:
        return str(error).splitlines()[0]
    problem = problem.split(" with value ")[0]  # a duplicate key: the values are shown as "{}"
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def load_params(path=PARAMS_FILE):
    """params.yaml read as DVC reads it (YAML 1.2, so `5e-05` is a number), checked against
    the schema and returned typed: every bad key is named in one error."""
    from ruamel.yaml import YAML, YAMLError
    try:
        with open(path) as f:
            params = YAML(typ="safe", pure=True).load(f) or {}
    except FileNotFoundError:
        raise StageError(f"{path} not found: run the stage from the project root") from None
    except YAMLError as e:
        raise StageError(f"{path} is not valid YAML ({yaml_problem(e)}): fix the file") from None
    if not isinstance(params, dict):
        raise StageError(f"{path} must map section names to sections, not hold a {type(params).__name__}")
    return validate(params, path)
