"""Stage `features_augmented` (Listings 5.20-5.21): the frozen conv base inside an end-to-end
model, with a new dense head, trained on augmented images.

    python -m stages.features_augmented SPLIT WEIGHTS MODEL LOGS
    (dvc.yaml: data/split models/vgg16_notop.weights.h5 models/features_augmented.keras dvclive/features_augmented)

With the cache on (the default on a CPU), the frozen base runs once over the validation
images and once per epoch over the augmented training images, and the head trains on its
output: the same batches as end-to-end training, with a third less work per epoch.
`echo` > 1 reuses each pass of augmented features for that many epochs (data echoing);
`views` > 0 keeps that many passes and draws each later epoch's features from them.
"""

from dogs_vs_cats.cache import frozen_part_data, use_cache
from dogs_vs_cats.config import load_params
from dogs_vs_cats.nets import conv_base, feature_extractor, frozen_base_classifier
from dogs_vs_cats.stage import run
from dogs_vs_cats.training import distributed, image_data, Phase, seed_everything, train, training_precision


def main(split_dir, weights, model_file, logs):
    params = load_params()
    own, size, preprocess = params.features_augmented, params.image.size, params.base.preprocess
    seed_everything(own.seed)
    with distributed("features_augmented", own):
        with training_precision("features_augmented", own):
            base = conv_base(weights, size)
            model = frozen_base_classifier(base, preprocess, own.units)
        phases = [Phase(own.epochs, own.lr)]
        if use_cache(own.cache, own.echo, own.views):
            data = frozen_part_data(feature_extractor(base, preprocess), size, own.batch_size, own.seed,
                                    params.augment, own.echo, own.views, split_dir)
            train("features_augmented", model, data, phases, own, trainer=model.get_layer("head"),
                  output=model_file, logs=logs)
        else:
            train("features_augmented", model, image_data(size, own.batch_size, own.seed, False, split_dir), phases,
                  own, augment=params.augment, output=model_file, logs=logs)


if __name__ == "__main__":
    run(main, inputs=("SPLIT", "WEIGHTS"), outputs=("MODEL", "LOGS"))
