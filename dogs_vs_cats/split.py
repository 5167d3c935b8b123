"""The split: train/validation/test images per class picked from an archive, in the
book's layout `<output>/{train,validation,test}/{cats,dogs}/`. Each chosen image is decoded
once; a bad one is skipped, reported and replaced by the next index."""

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath

from tqdm import tqdm

from dogs_vs_cats.archives import BadImage, check_image, list_candidates, open_archive, quiet_bomb_warnings, read_member
from dogs_vs_cats.catalog import CLASS_FOLDERS, CLASSES, IMAGE_NAME, SPLITS
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.outputs import atomic_dir, write_json


def _check_member(read_result):
    data, error = read_result
    if error:
        return None, None, error
    try:
        return (*check_image(data), None)
    except BadImage as e:
        return None, None, str(e)


def choose_images(archive, infos, needed, pool, progress):
    """Walk `infos` in order, keeping the first `needed` that decode; report the rest."""
    chosen, skipped, converted = [], [], []
    position = 0
    while len(chosen) < needed and position < len(infos):
        batch = infos[position: position + needed - len(chosen)]
        position += len(batch)
        raw = []
        for info in batch:
            try:
                raw.append((read_member(archive, info), None))
            except BadImage as e:
                raw.append((None, str(e)))
        with quiet_bomb_warnings():
            checked = list(pool.map(_check_member, raw))
        for info, (data, note, error) in zip(batch, checked):
            if error:
                skipped.append({"member": info.filename, "reason": error})
                continue
            if note:
                converted.append({"member": info.filename, "reason": note})
            chosen.append((info, data))
            progress.update(1)
    return chosen, skipped, converted


def why_unusable(skipped, ignored):
    """What was not usable, by reason, with an example of each: part of a one-line error."""
    groups = {}
    for item in skipped:
        groups.setdefault(item["reason"].split(" (")[0], []).append(item["member"])
    parts = [f"{len(members)} {reason} (e.g. {members[0]})" for reason, members in groups.items()]
    if ignored:
        parts.append(f"{len(ignored)} members ignored: names not like train/cat.<n>.jpg or train/dog.<n>.jpg "
                     f"(e.g. {', '.join(ignored[:2])})")
    return "; " + "; ".join(parts) if parts else ""


def make_split(archive_path, counts, order="book", seed=0, *, output, report):
    """Write the split to the folder `output` and its report to `report`; `counts` (the
    `split` section, or a mapping) gives each split's images per class."""
    counts = dict(counts)
    needed = sum(counts[name] for name in SPLITS)
    summary = {"counts": {}, "order": order, "seed": seed, "skipped": [], "converted": []}
    with open_archive(archive_path) as archive, atomic_dir(output) as tmp, \
            ThreadPoolExecutor() as pool, tqdm(total=2 * needed, desc="split", unit="img") as progress:
        candidates, summary["skipped"], ignored = list_candidates(archive)
        for kind, folder in zip(CLASSES, CLASS_FOLDERS):
            infos = [candidates[kind][i] for i in sorted(candidates[kind])]
            if order == "random":
                random.Random(f"{seed}-{kind}").shuffle(infos)
            chosen, skipped, converted = choose_images(archive, infos, needed, pool, progress)
            summary["skipped"] += skipped
            summary["converted"] += converted
            if len(chosen) < needed:
                raise StageError(
                    f"data.archive {archive_path} has {len(chosen)} usable {kind} images"
                    f"{why_unusable(summary['skipped'], ignored)}; "
                    f"split.train + split.validation + split.test asks for {needed}: "
                    f"lower those counts in params.yaml or use a larger archive")
            start = 0
            for name in SPLITS:
                folder_path = tmp / name / folder
                folder_path.mkdir(parents=True, exist_ok=True)
                for info, data in chosen[start: start + counts[name]]:
                    index = IMAGE_NAME.fullmatch(PurePosixPath(info.filename).name).group(2)
                    # The output name is rebuilt from the parsed class and index, never taken
                    # from the archive, so no member name can point outside data/split.
                    (folder_path / f"{kind}.{index}.jpg").write_bytes(data)
                summary["counts"].setdefault(name, {})[folder] = counts[name]
                start += counts[name]
        summary["total"] = 2 * needed
        summary["ignored"] = {"count": len(ignored), "examples": ignored[:10]}
        summary["skipped_count"] = len(summary["skipped"])
        summary["converted_count"] = len(summary["converted"])
    write_json(report, summary)
    for item in summary["skipped"]:
        print(f"skipped {item['member']}: {item['reason']}")
    return summary
