"""Stage `features_augmented` (Listings 5.20-5.21): the frozen conv base inside an end-to-end
model, with a new dense head, trained on augmented images.

With the cache on (the default on a CPU), the frozen base runs once over the validation
images and once per epoch over the augmented training images, and the head trains on its
output: the same batches as end-to-end training, with a third less work per epoch.
`echo` > 1 reuses each pass of augmented features for that many epochs (data echoing).
"""

from stages.common import load_params, run
from stages.nets import check_image_size, conv_base, feature_extractor, frozen_base_classifier, WEIGHTS_FILE
from stages.training import distributed, frozen_part_data, image_data, Phase, seed_everything, train, \
    training_precision, use_cache


def main():
    params = load_params()
    own, size = params["features_augmented"], check_image_size(params["image"]["size"])
    seed_everything(own["seed"])
    cached = use_cache("features_augmented", own)
    preprocess = params["base"]["preprocess"]
    with distributed("features_augmented", own):
        with training_precision("features_augmented", own):
            base = conv_base(WEIGHTS_FILE, size)
            model = frozen_base_classifier(base, preprocess, own["units"])
        phases = [Phase(own["epochs"], own["lr"])]
        if cached:
            data = frozen_part_data(feature_extractor(base, preprocess), size, own["batch_size"], own["seed"],
                                    params["augment"], own["echo"])
            train("features_augmented", model, data, phases, own, trainer=model.get_layer("head"))
        else:
            train("features_augmented", model, image_data(size, own["batch_size"], own["seed"], False), phases, own,
                  augment=params["augment"])


if __name__ == "__main__":
    run(main)
