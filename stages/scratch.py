"""Stage `scratch` (Listing 5.5): the small convnet trained from scratch on data/split."""

from stages.common import load_params, run
from stages.nets import check_image_size, small_convnet
from stages.training import distributed, image_data, Phase, seed_everything, train, training_precision, use_cache


def main():
    params = load_params()
    own, size = params["scratch"], check_image_size(params["image"]["size"])
    seed_everything(own["seed"])
    data = image_data(size, own["batch_size"], own["seed"], use_cache("scratch", own))
    with distributed("scratch", own):
        with training_precision("scratch", own):
            model = small_convnet(size)
        train("scratch", model, data, [Phase(own["epochs"], own["lr"])], own)


if __name__ == "__main__":
    run(main)
