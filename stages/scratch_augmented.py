"""Stage `scratch_augmented` (Listings 5.13-5.14): the small convnet with dropout, on augmented images."""

from stages.common import load_params, run
from stages.nets import check_image_size, small_convnet
from stages.training import distributed, image_data, Phase, seed_everything, train, training_precision, use_cache


def main():
    params = load_params()
    own, size = params["scratch_augmented"], check_image_size(params["image"]["size"])
    seed_everything(own["seed"])
    data = image_data(size, own["batch_size"], own["seed"], use_cache("scratch_augmented", own))
    with distributed("scratch_augmented", own):
        with training_precision("scratch_augmented", own):
            model = small_convnet(size, own["dropout"])
        train("scratch_augmented", model, data, [Phase(own["epochs"], own["lr"])], own, augment=params["augment"])


if __name__ == "__main__":
    run(main)
