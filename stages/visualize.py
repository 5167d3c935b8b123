"""Stage `visualize`: what the fine-tuned convnet sees, and the pictures of the chapter.

    python -m stages.visualize MODEL PREDICTIONS SPLIT OUTPUT
    (dvc.yaml: models/finetuned.keras metrics/eval/finetuned/predictions.json data/split metrics/visualize)

Writes PNG images to OUTPUT (image plots for `dvc plots`):
- augmentation.png: one training image and random augmentations of it (Figure 5.11);
- most_wrong.png: the test images the fine-tuned model gets most wrong;
- activations_<layer>.png: the first channels of each chosen layer for one test image;
- filters_<layer>.png: input patterns that maximise chosen filters (gradient ascent);
- gradcam.png: Grad-CAM class-activation heatmaps over a few test images.
"""

from dogs_vs_cats.config import load_params
from dogs_vs_cats.stage import run
from dogs_vs_cats.visualize import visualize


def main(model_file, predictions, split_dir, output):
    params = load_params()
    pictures = visualize(model_file, predictions, split_dir, output, params.image.size, params.augment,
                         params.visualize)
    print(f"wrote {output}/: {len(pictures)} images")


if __name__ == "__main__":
    run(main, inputs=("MODEL", "PREDICTIONS", "SPLIT"), outputs=("OUTPUT",))
