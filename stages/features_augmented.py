"""Stage `features_augmented` (Listings 5.20-5.21): the frozen conv base inside an end-to-end
model, with a new dense head, trained on augmented images."""

from stages.common import load_params, run
from stages.nets import check_image_size, conv_base, frozen_base_classifier
from stages.training import distributed, image_data, Phase, seed_everything, train


def main():
    params = load_params()
    own, size = params["features_augmented"], check_image_size(params["image"]["size"])
    seed_everything(own["seed"])
    with distributed("features_augmented", own):
        model = frozen_base_classifier(conv_base(params["base"]["weights"], size), params["base"]["preprocess"],
                                       own["units"])
        train("features_augmented", model, image_data(size, own["batch_size"], own["seed"]),
              [Phase(own["epochs"], own["lr"])], own, augment=params["augment"])


if __name__ == "__main__":
    run(main)
