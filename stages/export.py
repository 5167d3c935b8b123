"""Stage `export`: the fine-tuned model as a TensorFlow SavedModel for serving, in models/finetuned/.

One signature, `serve`: `images`, a uint8 batch N x H x W x 3 of RGB pictures of any
size (the same size within one batch), resized inside the graph the way training
resizes them (bilinear with antialiasing, rounded to whole values), in; `p_dog`, the N
dog probabilities (float32), out. Nothing of this project is needed to use it:

    loaded = tf.saved_model.load("models/finetuned")
    p_dog = loaded.serve(tf.constant(images_uint8))["p_dog"]

TensorFlow Serving and `saved_model_cli show --dir models/finetuned --all` see the same
signature as `serving_default`.
"""

from pathlib import Path

from stages.common import atomic_dir, load_params, run, StageError

MODEL = Path("models/finetuned.keras")
OUTPUT = Path("models/finetuned")


def export(model, path):
    """Write `model` (square RGB input) to `path` as a SavedModel taking uint8 images of any size."""
    import keras
    import tensorflow as tf
    from stages.images import resize
    size = model.input_shape[1]
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        return {"p_dog": tf.reshape(model(resize(images, size), training=False), [-1])}

    archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    with atomic_dir(path) as tmp:
        archive.write_out(str(tmp), verbose=False)


def main():
    load_params()  # validates params.yaml like every stage; the model carries its own input size
    if not MODEL.is_file():
        raise StageError(f"{MODEL} not found: run `dvc repro finetune` first")
    import keras
    export(keras.models.load_model(MODEL), OUTPUT)
    print(f"wrote {OUTPUT}/: SavedModel, signature serve(images: uint8 N x H x W x 3) -> p_dog (N)")


if __name__ == "__main__":
    run(main)
