"""The one schema of params.yaml: every key's type, range and allowed values.

`load_params` reads params.yaml as DVC does (YAML 1.2: `5e-05` is a number) and checks it
against this schema once, reporting every bad key in one line.
"""

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator, StrictBool, StrictFloat, StrictInt, StrictStr

Count = Annotated[StrictInt, Field(ge=1)]
Epochs = Annotated[StrictInt, Field(ge=1)]
Seed = StrictInt
Rate = Annotated[Union[StrictInt, StrictFloat], Field(gt=0)]  # a learning rate
Fraction = Annotated[Union[StrictInt, StrictFloat], Field(ge=0, lt=1)]  # dropout, smoothing
Precision = Literal["float32", "bfloat16", "mixed_float16"]
Distribute = Literal["none", "mirrored"]
Cache = Literal["auto", True, False]
Patience = Annotated[StrictInt, Field(ge=0)]


class Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Data(Section):
    archive: Annotated[StrictStr, Field(min_length=1)]


class Sample(Section):
    per_class: Count
    seed: Seed
    min_side: Count
    max_side: Count
    test_images: Count

    @model_validator(mode="after")
    def sides_in_order(self):
        if self.max_side < self.min_side:
            raise ValueError(f"max_side {self.max_side} is below min_side {self.min_side}")
        return self


class Split(Section):
    train: Count
    validation: Count
    test: Count
    order: Literal["book", "random"]
    seed: Seed


class Image(Section):
    size: Annotated[StrictInt, Field(ge=32, le=512)]  # VGG16 halves it five times; 512 px is 12x the book's pixels


class Base(Section):
    weights: Annotated[StrictStr, Field(min_length=1)]  # imagenet, none or a file path
    preprocess: Literal["vgg16", "rescale"]


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


class TrainHead(Validated):
    units: Count
    dropout: Fraction


class FeaturesAugmented(Validated):
    units: Count
    cache: Cache
    echo: Count


class Finetune(Validated):
    start_from: Literal["features_augmented", "head"]
    frozen_epochs: Annotated[StrictInt, Field(ge=0)]
    frozen_lr: Rate
    unfreeze_from: StrictStr
    cache: Cache
    echo: Count


class Evaluate(Section):
    batch_size: Count


class Curves(Section):
    smoothing: Fraction


class Visualize(Section):
    image: Annotated[StrictInt, Field(ge=0)]
    layers: Annotated[list[StrictStr], Field(min_length=1)]
    channels: Count
    filters: Count
    ascent_steps: Count
    ascent_size: Annotated[StrictInt, Field(ge=32, le=512)]
    gradcam_images: Count
    augmentations: Count
    most_wrong: Count
    seed: Seed


class Submission(Section):
    archive: Annotated[StrictStr, Field(min_length=1)]
    model: Literal["finetuned", "features_augmented", "scratch", "scratch_augmented"]
    clip: Annotated[Union[StrictInt, StrictFloat], Field(ge=0, lt=0.5)]
    tta: Annotated[StrictInt, Field(ge=1, le=12)]
    batch_size: Count


class Mnist(Training):
    npz: StrictStr


class Params(Section):
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
                           if not str(part).startswith(("int", "float", "literal", "function")))
            if error["type"] == "missing":
                found[key] = f"{key}: missing"
            elif error["type"] == "extra_forbidden":
                found[key] = f"{key}: not a known key"
            else:  # a number's last alternative, float, says it best: keep the last message per key
                found[key] = f"{key}: {error['msg'].replace('Input should be', 'should be')} (got {error['input']!r})"
        return list(found.values())
    return []
