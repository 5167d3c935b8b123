"""Stage `mnist_data`: the MNIST arrays the `mnist` stage trains on.

    python -m stages.mnist_data OUTPUT     (dvc.yaml: data/mnist.npz)

Source: `mnist.npz`, the path of a local mnist.npz in Keras' format (x_train, y_train,
x_test, y_test), or "" for Keras' own download (cached in ~/.keras/datasets). The file
is checked and copied byte for byte, so OUTPUT is a DVC output with a hash (in
dvc.lock, in the cache, pushed to a remote) and `mnist` re-runs exactly when the data
changed. DVC cannot see a file outside the project change: after replacing the file
behind the path, `dvc repro -f mnist_data` copies it again (the same bytes re-run nothing).
"""

import shutil

from dogs_vs_cats.config import load_params
from dogs_vs_cats.mnist import load_mnist, source
from dogs_vs_cats.outputs import atomic_file
from dogs_vs_cats.stage import run


def main(output):
    path = source(load_params().mnist.npz)
    load_mnist(path)
    with atomic_file(output) as tmp:
        shutil.copyfile(path, tmp)
    print(f"wrote {output} from {path}")


if __name__ == "__main__":
    run(main, outputs=("OUTPUT",))
