"""The split: train/validation/test images per class picked from an archive, in the
book's layout `<output>/{train,validation,test}/{cats,dogs}/`. Each chosen image is decoded
once and written as soon as it is checked, so memory does not grow with the archive; a bad
one is skipped, reported and replaced by the next index."""

import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath

from tqdm import tqdm

from dogs_vs_cats.archives import BadImage, check_image, list_candidates, open_archive, quiet_bomb_warnings, read_member
from dogs_vs_cats.catalog import CLASS_FOLDERS, CLASSES, IMAGE_NAME, SPLITS
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.outputs import atomic_dir, write_json

CHUNK = 256  # members read and checked together (in parallel)
# Kaggle's unlabelled test set: test1.zip's members, or test1.zip inside the competition zip.
KAGGLE_TEST_SET = re.compile(r"(.*/)?test1(/[0-9]+\.jpg|\.zip)")


def _check_member(read_result):
    data, error = read_result
    if error:
        return None, None, error
    try:
        return (*check_image(data), None)
    except BadImage as e:
        return None, None, str(e)


def usable_images(archive, infos, pool):
    """Yield (info, data, note) for every member of `infos` that decodes, in order, and
    (info, None, reason) for every one that does not; members are read a chunk at a time."""
    for position in range(0, len(infos), CHUNK):
        chunk = infos[position:position + CHUNK]
        raw = []
        for info in chunk:
            try:
                raw.append((read_member(archive, info), None))
            except BadImage as e:
                raw.append((None, str(e)))
        with quiet_bomb_warnings():
            checked = list(pool.map(_check_member, raw))
        for info, (data, note, error) in zip(chunk, checked):
            yield (info, None, error) if error else (info, data, note)


def split_of(position, counts, number=0):
    """The split that takes a class's usable image numbered `number`, or None when every
    split is full. Numeric counts take train, validation, test one after the other, by
    `position`, the image's among the usable ones (0-based). `train: all` chooses by number:
    every image numbered below `holdout_from` trains, whatever is missing below it, and
    `position` counts the usable images from `holdout_from` on: the first `validation` of
    them validate, the next `test` test, the rest train."""
    validation, test = counts["validation"], counts["test"]
    start = counts["train"]
    if counts["train"] == "all":
        if number < counts.get("holdout_from", 0):
            return "train"
        start = 0
    if position < start:
        return "train"
    if position < start + validation:
        return "validation"
    if position < start + validation + test:
        return "test"
    return "train" if counts["train"] == "all" else None


def images_needed(counts):
    """Usable images each class must have for `counts` (with `train: all`, numbered
    `holdout_from` or above: validation and test, and one more to train on)."""
    held_out = counts["validation"] + counts["test"]
    if counts["train"] == "all":
        return held_out + 1
    return counts["train"] + held_out


def reason_kind(reason):
    """The kind of a skip reason, to count members by: the words before its details
    ("too large: Image size (...) exceeds ..." -> "too large", "duplicate of X" -> "duplicate")."""
    if reason.startswith("duplicate of "):
        return "duplicate"
    return re.split(r": | \(", reason, maxsplit=1)[0]


def why_unusable(skipped, ignored):
    """What was not usable, by reason, with an example of each: part of a one-line error."""
    groups = {}
    for item in skipped:
        groups.setdefault(reason_kind(item["reason"]), []).append(item["member"])
    parts = [f"{len(members)} {reason} (e.g. {members[0]})" for reason, members in groups.items()]
    if ignored:
        parts.append(f"{len(ignored)} members ignored: names not like train/cat.<n>.jpg or train/dog.<n>.jpg "
                     f"(e.g. {', '.join(ignored[:2])})")
    return "; " + "; ".join(parts) if parts else ""


def write_class(archive, infos, kind, folder, counts, pool, tmp, summary, progress):
    """Write one class's chosen images into `tmp`, and each split's lowest and highest number
    into `summary`; the number of usable images found, and how many of them are numbered
    `holdout_from` or above (with `train: all`; else all of them)."""
    found = position = 0
    from_holdout = counts.get("holdout_from", 0) if counts["train"] == "all" else 0
    spans = {}  # split: (lowest number, highest)
    for info, data, note in usable_images(archive, infos, pool):
        index = IMAGE_NAME.fullmatch(PurePosixPath(info.filename).name).group(2)
        number = int(index)
        name = split_of(position, counts, number)
        if name is None:
            break
        progress.update(1)
        if data is None:
            summary["skipped"].append({"member": info.filename, "reason": note})
            continue
        if note:
            summary["converted"].append({"member": info.filename, "reason": note})
        # The output name is rebuilt from the parsed class and index, never taken from the
        # archive, so no member name can point outside data/split.
        (tmp / name / folder / f"{kind}.{index}.jpg").write_bytes(data)
        summary["counts"][name][folder] += 1
        low, high = spans.get(name, (number, number))
        spans[name] = min(low, number), max(high, number)
        found += 1
        position += number >= from_holdout
    for name in SPLITS:
        first, last = spans.get(name, (None, None))
        summary["numbers"][name][folder] = {"first": first, "last": last}
    return found, position


def shortfall(counts, kind, found, held):
    """(what a class has, what `counts` asks for), the middle of a one-line error, when the
    class has too few usable images (`found`, `held` of them from holdout_from on); else None."""
    needed = images_needed(counts)
    if counts["train"] != "all":
        return None if found >= needed else (
            f"{found} usable {kind} images", f"split.train + split.validation + split.test asks for {needed}")
    if held >= needed - 1 and found >= needed:
        return None
    first = counts.get("holdout_from", 0)
    return (f"{found} usable {kind} images, {held} of them numbered {first} or above",
            f"split.validation + split.test asks for {needed - 1} numbered split.holdout_from ({first}) or above, "
            f"and 1 more to train on")


def warn_if_holdout_moved(kind, folder, counts, summary):
    """With `train: all` in the book's order, one line when validation and test are not the
    photos numbered holdout_from on (some missing or unusable there), saying what they took."""
    first, held_out = counts.get("holdout_from", 0), counts["validation"] + counts["test"]
    validation, test = summary["numbers"]["validation"][folder], summary["numbers"]["test"][folder]
    moved = test["last"] - (first + held_out - 1)  # each photo missing or skipped there moves the end by one
    if moved:
        print(f"warning: {kind}.{first}-{first + held_out - 1} (split.holdout_from on) lack {moved} usable "
              f"photo{'s' if moved > 1 else ''}: validation took {kind}.{validation['first']}-{validation['last']} "
              f"and test {kind}.{test['first']}-{test['last']} instead (metrics/data.json: numbers)")


def make_split(archive_path, counts, order="book", seed=0, *, output, report):
    """Write the split to the folder `output` and its report to `report`; `counts` (the
    `split` section, or a mapping) gives each split's images per class, `train: all` every
    usable image outside validation and test."""
    counts = dict(counts)
    needed = images_needed(counts)
    summary = {"counts": {name: {folder: 0 for folder in CLASS_FOLDERS} for name in SPLITS},
               "numbers": {name: {} for name in SPLITS},  # each class's lowest and highest number
               "order": order, "seed": seed, "skipped": [], "converted": []}
    with open_archive(archive_path) as archive, atomic_dir(output) as tmp, ThreadPoolExecutor() as pool:
        candidates, summary["skipped"], ignored = list_candidates(archive)
        total = sum(len(members) for members in candidates.values())
        if counts["train"] != "all":
            total = min(total, 2 * needed)
        for name in SPLITS:
            for folder in CLASS_FOLDERS:
                (tmp / name / folder).mkdir(parents=True)
        with tqdm(total=total, desc="split", unit="img", mininterval=2) as progress:
            for kind, folder in zip(CLASSES, CLASS_FOLDERS):
                infos = [candidates[kind][i] for i in sorted(candidates[kind])]
                if order == "random":
                    random.Random(f"{seed}-{kind}").shuffle(infos)
                found, held = write_class(archive, infos, kind, folder, counts, pool, tmp, summary, progress)
                lacking = shortfall(counts, kind, found, held)
                if lacking:
                    advice = "lower those counts in params.yaml or use a larger archive"
                    if not found and any(KAGGLE_TEST_SET.fullmatch(name) for name in ignored):
                        advice = ("it holds Kaggle's test set (test1/<id>.jpg, unlabelled: submission.archive's "
                                  "input): point data.archive at train.zip or the competition's dogs-vs-cats.zip")
                    has, asked = lacking
                    raise StageError(f"data.archive {archive_path} has {has}{why_unusable(summary['skipped'], ignored)}"
                                     f"; {asked}: {advice}")
                if counts["train"] == "all" and order == "book":
                    warn_if_holdout_moved(kind, folder, counts, summary)
        summary["total"] = sum(sum(per_class.values()) for per_class in summary["counts"].values())
        summary["ignored"] = {"count": len(ignored), "examples": ignored[:10]}
        summary["skipped_count"] = len(summary["skipped"])
        summary["converted_count"] = len(summary["converted"])
    write_json(report, summary)
    for item in summary["skipped"]:
        print(f"skipped {item['member']}: {item['reason']}")
    return summary
