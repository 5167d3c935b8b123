"""Stage `mnist` (Listings 5.1-5.3): the MNIST convnet, a small chain of its own.

Data: data/mnist.npz, Keras' format (x_train, y_train, x_test, y_test), which the
`mnist_data` stage writes from the `mnist.npz` param (a local file, or Keras' download).
"""

from pathlib import Path

from stages.common import load_params, run, StageError, write_json
from stages.mnist_data import load_mnist, OUTPUT as MNIST_FILE
from stages.nets import mnist_convnet
from stages.training import distributed, Phase, seed_everything, train, training_precision

METRICS = Path("metrics/mnist.json")


def main():
    params = load_params()["mnist"]
    seed_everything(params["seed"])
    if not MNIST_FILE.is_file():
        raise StageError(f"{MNIST_FILE} not found: run `dvc repro mnist_data` first")
    x_train, y_train, x_test, y_test = load_mnist(MNIST_FILE)
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
