"""What the fine-tuned convnet sees, and the pictures of the chapter (its section 5.4):

- augmentation.png: one training image and random augmentations of it (Figure 5.11);
- most_wrong.png: the test images the fine-tuned model gets most wrong;
- activations_<layer>.png: the first channels of each chosen layer for one test image;
- filters_<layer>.png: input patterns that maximise chosen filters (gradient ascent);
- gradcam.png: Grad-CAM class-activation heatmaps over a few test images.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dogs_vs_cats.augment import augmentation  # noqa: E402
from dogs_vs_cats.catalog import CLASS_FOLDERS, CLASSES  # noqa: E402
from dogs_vs_cats.errors import StageError  # noqa: E402
from dogs_vs_cats.images import list_images, load_image  # noqa: E402
from dogs_vs_cats.nets import all_layers  # noqa: E402
from dogs_vs_cats.outputs import atomic_dir, atomic_file  # noqa: E402

LAST_CONV = "block5_conv3"


def save_figure(figure, path):
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)


def grid(images, titles=None, columns=8, size=1.6, cmap=None):
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * size), squeeze=False)
    for i, axis in enumerate(axes.flat):
        axis.axis("off")
        if i < len(images):
            axis.imshow(images[i], cmap=cmap)
            if titles:
                axis.set_title(titles[i], fontsize=7)
    return figure


def to_uint8(image):
    return np.clip(np.asarray(image), 0, 255).astype(np.uint8)


def normalise(array):
    """Scale to [0, 1]; a constant array becomes zeros."""
    array = np.asarray(array, dtype=np.float32)
    span = array.max() - array.min()
    return (array - array.min()) / span if span > 0 else np.zeros_like(array)


def without_sigmoid(classifier):
    """`classifier` (a Sequential ending in Dense(1, sigmoid), possibly inside a nested
    Sequential) with the same weights, giving the logit instead of the probability."""
    layers = [layer for layer in all_layers(classifier) if not isinstance(layer, keras.Model)]  # nested ones expanded
    last = layers[-1]
    linear = last.__class__.from_config({**last.get_config(), "activation": "linear", "name": f"{last.name}_logit"})
    model = keras.Sequential([keras.Input(classifier.input_shape[1:]), *layers[:-1], linear])
    linear.set_weights(last.get_weights())
    return model


def grad_cam(feature_model, classifier, images):
    """Grad-CAM heatmaps, one per image, of the images' size, with values in [0, 1].

    `feature_model` maps images to the last convolutional maps, `classifier` maps those to
    the sigmoid output. The score of the predicted class is taken before the sigmoid, as
    in Grad-CAM's paper: the logit for a dog, minus the logit for a cat (the probability
    saturates on confident predictions and its gradient vanishes). Each map is weighted by
    the mean gradient of that score and the positive part of the sum is kept.
    """
    logits = without_sigmoid(classifier)
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        maps = feature_model(images)
        tape.watch(maps)
        logit = tf.cast(logits(maps)[:, 0], tf.float32)
        score = tf.where(logit > 0, logit, -logit)
    gradients = tape.gradient(score, maps)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., None]
    cams = tf.image.resize(cams, images.shape[1:3], method="bilinear")[..., 0].numpy()
    return np.stack([normalise(cam) for cam in cams])


def filter_patterns(layer_model, preprocess, count, steps, size, seed):
    """Gradient ascent in input space: for filter i, an image that maximises its mean activation."""
    count = min(count, layer_model.output_shape[-1])
    rng = np.random.default_rng(seed)
    images = tf.Variable(rng.uniform(0, 20, (count, size, size, 3)).astype(np.float32) + 128)  # grey noise, as the book

    # One graph per step instead of op by op: the same patterns, a few times faster on a CPU
    # (most of visualize's time is here).
    @tf.function
    def ascend():
        with tf.GradientTape() as tape:
            activations = layer_model(preprocess(images))
            loss = tf.reduce_sum([tf.reduce_mean(activations[i, ..., i]) for i in range(count)])
        gradients = tape.gradient(loss, images)
        gradients /= tf.sqrt(tf.reduce_mean(tf.square(gradients), axis=(1, 2, 3), keepdims=True)) + 1e-5
        images.assign_add(gradients)

    for _ in range(steps):
        ascend()
    # The book's deprocessing: centre, scale to a standard deviation of 0.1, shift to 0.5.
    patterns = images.numpy()
    patterns -= patterns.mean(axis=(1, 2, 3), keepdims=True)
    patterns /= patterns.std(axis=(1, 2, 3), keepdims=True) + 1e-5
    return np.clip(patterns * 0.1 + 0.5, 0, 1)


def model_parts(model, path):
    """The preprocessing layer, the VGG16 base and the head of the fine-tuned model saved at `path`."""
    try:
        preprocess, base, head = (model.get_layer(name) for name in ("preprocess", "vgg16", "head"))
    except ValueError:
        preprocess = None
    if preprocess is None:
        raise StageError(f"{path} is not the fine-tuned VGG16 this project saves: run `dvc repro finetune`")
    return preprocess, base, head


def most_wrong(predictions_file, test_dir, count, size):
    """The `count` test images (in `test_dir`) whose predictions (evaluate's predictions.json) are furthest off."""
    predictions_file = Path(predictions_file)
    if not predictions_file.is_file():
        raise StageError(f"{predictions_file} not found: run `dvc repro evaluate@finetuned` first")
    predictions = json.loads(predictions_file.read_text())["predictions"]
    worst = sorted(predictions, key=lambda p: -abs(p["label"] - p["probability"]))[:count]
    images = [to_uint8(load_image(str(Path(test_dir) / CLASS_FOLDERS[p["label"]] / p["image"]), size)) for p in worst]
    titles = [f"{p['image']}\np(dog) = {p['probability']:.2f}" for p in worst]
    return images, titles


def visualize(model_file, predictions_file, split_dir, output_dir, size, augment, settings):
    """Every picture of the chapter for the fine-tuned model at `model_file`, into `output_dir`;
    return the paths of the pictures drawn.

    `size` is image.size, `augment` the augment section, `settings` the visualize section.
    The folder is replaced as a whole once every picture is drawn: it holds exactly this
    run's pictures (none of layers no longer configured, no file dropped there), and a
    failed run leaves the previous folder as it was.
    """
    model_file, output_dir = Path(model_file), Path(output_dir)
    if not model_file.is_file():
        raise StageError(f"{model_file} not found: run `dvc repro finetune` first")
    with atomic_dir(output_dir) as tmp:
        drawn = _draw(model_file, predictions_file, split_dir, tmp, size, augment, dict(settings))
    return [output_dir / path.name for path in drawn]


def _draw(model_file, predictions_file, split_dir, output_dir, size, augment, settings):
    """visualize's pictures, drawn into `output_dir`: the paths written."""
    drawn = []

    def save(figure, name):
        save_figure(figure, output_dir / name)
        if output_dir / name not in drawn:  # a layer named twice is one picture
            drawn.append(output_dir / name)

    model = keras.models.load_model(model_file)
    preprocess, base, head = model_parts(model, model_file)
    test_paths, test_labels = list_images("test", split_dir)
    train_paths, _ = list_images("train", split_dir)

    image = load_image(train_paths[settings["image"] % len(train_paths)], size)[None]
    layers = augmentation(augment, seed=settings["seed"])
    augmented = [to_uint8(image[0])] + [to_uint8(layers(image, training=True)[0])
                                        for _ in range(settings["augmentations"])]
    save(grid(augmented, ["original"] + [f"augmented {i + 1}" for i in range(len(augmented) - 1)], columns=4,
              size=2.2), "augmentation.png")

    images, titles = most_wrong(predictions_file, Path(split_dir) / "test", settings["most_wrong"], size)
    save(grid(images, titles, columns=4, size=2.2), "most_wrong.png")

    test_image = load_image(test_paths[settings["image"] % len(test_paths)], size)[None]
    activation_model = keras.Model(base.input, [base.get_layer(name).output for name in settings["layers"]])
    activations = activation_model(preprocess(test_image))
    if not isinstance(activations, (list, tuple)):  # a model of one output returns it, not a list of one
        activations = [activations]
    for name, activation in zip(settings["layers"], activations):
        channels = activation[0].numpy()[..., : settings["channels"]]
        maps = [normalise(channels[..., c]) for c in range(channels.shape[-1])]
        save(grid(maps, [f"{name} #{c}" for c in range(len(maps))], cmap="viridis"), f"activations_{name}.png")

    # The same weights at the patterns' own size (conv weights do not depend on it).
    resized = keras.applications.VGG16(
        include_top=False, weights=None, input_shape=(settings["ascent_size"], settings["ascent_size"], 3)
    )
    resized.set_weights(base.get_weights())
    for name in settings["layers"]:
        layer_model = keras.Model(resized.input, resized.get_layer(name).output)
        patterns = filter_patterns(layer_model, preprocess, settings["filters"], settings["ascent_steps"],
                                   settings["ascent_size"], settings["seed"])
        save(grid(list(patterns), [f"{name} #{i}" for i in range(len(patterns))]), f"filters_{name}.png")

    feature_model = keras.Sequential(
        [keras.Input(test_image.shape[1:]), preprocess, keras.Model(base.input, base.get_layer(LAST_CONV).output)]
    )
    classifier = keras.Sequential([keras.Input(feature_model.output_shape[1:]), base.get_layer("block5_pool"), head])
    step = max(1, len(test_paths) // settings["gradcam_images"])
    picked = list(range(0, len(test_paths), step))[: settings["gradcam_images"]]  # cats first, then dogs
    chosen = np.stack([load_image(test_paths[i], size) for i in picked])
    heatmaps = grad_cam(feature_model, classifier, chosen)
    p_dog = model.predict(chosen, verbose=0).ravel()
    titles = [
        f"{Path(test_paths[i]).name} ({CLASSES[test_labels[i]]})\nP(dog) = {p:.2f}" for i, p in zip(picked, p_dog)
    ]
    overlays = [
        to_uint8(0.6 * image + 0.4 * 255 * plt.cm.jet(heatmap)[..., :3]) for image, heatmap in zip(chosen, heatmaps)
    ]
    save(grid(overlays, titles, columns=min(4, len(overlays)), size=2.2), "gradcam.png")
    return drawn
