"""Stage `export`: the fine-tuned model as a TensorFlow SavedModel for serving.

    python -m stages.export MODEL OUTPUT     (dvc.yaml: models/finetuned.keras models/finetuned)

OUTPUT's one signature, `serve`, takes `images`, a uint8 batch of RGB pictures of any size,
and gives `p_dog`; nothing of this project is needed to use it (dogs_vs_cats/export.py,
docs/predict.md). TensorFlow Serving and `saved_model_cli show --dir models/finetuned
--all` see the same signature as `serving_default`.
"""

from dogs_vs_cats.config import load_params
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.export import export
from dogs_vs_cats.stage import run


def main(model_file, output):
    load_params()  # validates params.yaml like every stage; the model carries its own input size
    if not model_file.is_file():
        raise StageError(f"{model_file} not found: run `dvc repro finetune` first")
    import keras
    export(keras.models.load_model(model_file), output)
    print(f"wrote {output}/: SavedModel, signature serve(images: uint8 N x H x W x 3) -> p_dog (N)")


if __name__ == "__main__":
    run(main, inputs=("MODEL",), outputs=("OUTPUT",))
