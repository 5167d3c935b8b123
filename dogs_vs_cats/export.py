"""A trained model as a TensorFlow SavedModel for serving.

One signature, `serve`: `images`, a uint8 batch N x H x W x 3 of RGB pictures of any
size (the same size within one batch), resized inside the graph the way training
resizes them (bilinear with antialiasing, rounded to whole values), in; `p_dog`, the N
dog probabilities (float32), out. Nothing of this project is needed to use it:

    loaded = tf.saved_model.load("models/finetuned")
    p_dog = loaded.serve(tf.constant(images_uint8))["p_dog"]
"""

from dogs_vs_cats.outputs import atomic_dir


def export(model, path):
    """Write `model` (square RGB input) to `path` as a SavedModel taking uint8 images of any size."""
    import keras
    import tensorflow as tf

    from dogs_vs_cats.images import resize
    size = model.input_shape[1]
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        return {"p_dog": tf.reshape(model(resize(images, size), training=False), [-1])}

    archive.add_endpoint(
        "serve", serve, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")]
    )
    with atomic_dir(path) as tmp:
        archive.write_out(str(tmp), verbose=False)
