"""Stage `mnist` (Listings 5.1-5.3): the MNIST convnet, a small chain of its own.

Data: `mnist.npz` in Keras' format (x_train, y_train, x_test, y_test), from the path in
params `mnist.npz`, or downloaded once by keras.datasets.mnist into ~/.keras/datasets.
"""

from pathlib import Path

import keras
import numpy as np

from stages.common import load_params, run, StageError, write_json
from stages.nets import mnist_convnet
from stages.training import distributed, Phase, seed_everything, train, training_precision

METRICS = Path("metrics/mnist.json")
KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_mnist(path):
    if not path:
        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        except Exception as e:  # Keras raises a bare Exception for a failed download
            raise StageError(
                f"could not download MNIST ({str(e).splitlines()[0][:200]}): put Keras' mnist.npz in "
                f"~/.keras/datasets/, or set mnist.npz in params.yaml to a local copy (`make mnist MNIST=path/to/mnist.npz`)"
            ) from None
        return x_train, y_train, x_test, y_test
    if not Path(path).is_file():
        raise StageError(f"mnist.npz {path} not found: set mnist.npz to a local mnist.npz, or to \"\" to download it")
    try:
        with np.load(path) as data:
            arrays = tuple(data[key] for key in KEYS)
    except (KeyError, ValueError, OSError) as e:
        raise StageError(f"mnist.npz {path} is not Keras' mnist.npz (arrays {', '.join(KEYS)}): {e}") from None
    for images, labels, name in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "test")):
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels) or not len(images):
            raise StageError(f"mnist.npz {path}: x_{name} must be N x 28 x 28 with N labels in y_{name}, "
                             f"got {images.shape} and {labels.shape}")
    return arrays


def main():
    params = load_params()["mnist"]
    seed_everything(params["seed"])
    x_train, y_train, x_test, y_test = load_mnist(params["npz"])
    with distributed("mnist", params):
        data = {"x": x_train[..., None], "y": y_train, "batch_size": params["batch_size"]}
        with training_precision("mnist", params):
            model = mnist_convnet()
        model = train("mnist", model, data, [Phase(params["epochs"], params["lr"])], params,
                      loss="sparse_categorical_crossentropy")
        loss, accuracy = model.evaluate(x_test[..., None], y_test, batch_size=256, verbose=0)
    write_json(METRICS, {"accuracy": round(float(accuracy), 6), "loss": round(float(loss), 6)})
    print(f"MNIST test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    run(main)
