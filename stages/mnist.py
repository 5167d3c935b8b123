"""Stage `mnist` (Listings 5.1-5.3): the MNIST convnet, a small chain of its own.

    python -m stages.mnist DATA MODEL LOGS METRICS
    (dvc.yaml: data/mnist.npz models/mnist.keras dvclive/mnist metrics/mnist.json)

DATA is Keras' mnist.npz format (x_train, y_train, x_test, y_test), which the
`mnist_data` stage writes from the `mnist.npz` param (a local file, or Keras' download).
METRICS gets the test `accuracy` and `loss`.
"""

from dogs_vs_cats.batches import ArrayBatches
from dogs_vs_cats.config import load_params
from dogs_vs_cats.distribute import training_scope
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.mnist import load_mnist
from dogs_vs_cats.nets import mnist_convnet
from dogs_vs_cats.outputs import write_json
from dogs_vs_cats.stage import run
from dogs_vs_cats.training import Phase, train, training_precision


def main(data_file, model_file, logs, metrics):
    own = load_params().mnist
    if not data_file.is_file():
        raise StageError(f"{data_file} not found: run `dvc repro mnist_data` first")
    x_train, y_train, x_test, y_test = load_mnist(data_file)
    with training_scope("mnist", own):
        data = {"x": ArrayBatches(x_train[..., None], y_train, own.batch_size, own.seed)}
        with training_precision("mnist", own):
            model = mnist_convnet()
        model = train("mnist", model, data, [Phase(own.epochs, own.lr)], own, loss="sparse_categorical_crossentropy",
                      output=model_file, logs=logs)
        loss, accuracy = model.evaluate(x_test[..., None], y_test, batch_size=256, verbose=0)
    write_json(metrics, {"accuracy": round(float(accuracy), 6), "loss": round(float(loss), 6)})
    print(f"MNIST test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    run(main, inputs=("DATA",), outputs=("MODEL", "LOGS", "METRICS"))
