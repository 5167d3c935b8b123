"""Stage `finetune` (Listings 5.22-5.23): conv base + trained head, end to end on augmented images.

    python -m stages.finetune SPLIT WEIGHTS START MODEL LOGS
    (dvc.yaml: data/split models/vgg16_notop.weights.h5 models/${finetune.start_from}.keras
     models/finetuned.keras dvclive/finetune)

The head starts from START, the model `start_from` names. Phase 1 (optional,
`frozen_epochs`) trains with the whole base frozen; phase 2 unfreezes the base from
`unfreeze_from` on and trains with a small learning rate. The model of the epoch with the
lowest validation loss is saved. How the frozen layers run (the frozen-part cache, echo,
views, precision, distribute) is `fit_images`' business (docs/book-schedule.md).
"""

from dogs_vs_cats.config import load_params
from dogs_vs_cats.distribute import training_scope
from dogs_vs_cats.fitting import fit_images
from dogs_vs_cats.nets import conv_base, load_head, stack, unfreeze_from
from dogs_vs_cats.stage import run
from dogs_vs_cats.training import Phase, training_precision


def main(split_dir, weights, start, model_file, logs):
    params = load_params()
    tune = params.finetune
    with training_scope("finetune", tune):
        with training_precision("finetune", tune):
            base = conv_base(weights, params.image.size)
            model = stack(base, load_head(start, base.output_shape[1:]), params.base.preprocess, "finetuned")
        phases = [Phase(tune.frozen_epochs, tune.frozen_lr, lambda: unfreeze_from(base, None)),
                  Phase(tune.epochs, tune.lr, lambda: unfreeze_from(base, tune.unfreeze_from))]
        fit_images("finetune", model, phases, params, split_dir, output=model_file, logs=logs,
                   base=base, trainable_from=tune.unfreeze_from, augment=params.augment)


if __name__ == "__main__":
    run(main, inputs=("SPLIT", "WEIGHTS", "START"), outputs=("MODEL", "LOGS"))
