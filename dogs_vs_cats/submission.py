"""Kaggle's deliverable: P(dog) for every image of the competition's test1.zip, as `id,label`.

Probabilities are clipped to [clip, 1 - clip]: log loss charges -ln(p) for a wrong answer
given with confidence 1 - p, so one confident mistake at p = 1e-7 costs 16, at 0.005 it
costs 5.3, while clipping a right answer at 0.995 costs 0.005. An image that cannot be
read gets 0.5 (ln 2) and is reported.
"""

import re
from functools import partial
from pathlib import PurePosixPath

from dogs_vs_cats.archives import open_archive, read_member, SUBMISSION_HELP
from dogs_vs_cats.errors import StageError
from dogs_vs_cats.outputs import atomic_file
from dogs_vs_cats.predict import classify, load_classifier, model_temperature, read_source

TEST_NAME = re.compile(r"(0|[1-9][0-9]*)\.jpg")  # test1/<id>.jpg
UNREADABLE = 0.5  # what an image that cannot be read gets: no information, log loss ln 2
SHOWN = 20  # ignored images named one per line; the rest counted
KAGGLE_TEST_IDS = 12_500  # the competition's test1.zip: ids 1..12500, each one scored


def ranges(ids):
    """Sorted distinct ids as runs of consecutive ones, [[first, last], ...]."""
    runs = []
    for image_id in ids:
        if runs and runs[-1][1] == image_id - 1:
            runs[-1][1] = image_id
        else:
            runs.append([image_id, image_id])
    return runs


def shown(runs):
    """Runs as "7, 100-101": the first SHOWN of them, then how many more."""
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:SHOWN])
    return text + (f" and {len(runs) - SHOWN} more ranges" if len(runs) > SHOWN else "")


def id_gap(ids):
    """The ids a submission lacks, as a phrase ("no id missing of 1..12500", "3 ids missing
    of 1..12500: 7, 100-101"): ids run from 1 to the highest, or to Kaggle's 12,500 when
    more than half of those are there (the competition's test set with its last ids lost).
    Ids outside Kaggle's 1..12500 (0, 123456789012) are kept as they are and named.

    The gaps are found between the ids themselves, so time and memory follow the number of
    photos, never the numbers in their names."""
    ids = sorted(set(ids))
    kaggle = [image_id for image_id in ids if 1 <= image_id <= KAGGLE_TEST_IDS]
    outside = [image_id for image_id in ids if not 1 <= image_id <= KAGGLE_TEST_IDS]
    top = kaggle[-1] if kaggle else 0
    if KAGGLE_TEST_IDS < 2 * len(kaggle):
        top = KAGGLE_TEST_IDS
    # the runs of missing ids are the gaps between consecutive ids present (and after the last)
    gaps = [[low + 1, high - 1] for low, high in zip([0, *kaggle], [*kaggle, top + 1]) if high - low > 1]
    missing = sum(high - low + 1 for low, high in gaps)
    phrase = (f"{missing} id{'s' if missing > 1 else ''} missing of 1..{top}: {shown(gaps)}" if missing
              else f"no id missing of 1..{top}")
    if outside:
        phrase += (f"; {len(outside)} id{'s' if len(outside) > 1 else ''} outside Kaggle's 1..{KAGGLE_TEST_IDS}, "
                   f"kept as they are: {shown(ranges(outside))}")
    return phrase


def test_members(archive):
    """The archive's test images sorted by id, and what was left out with why: an image in
    a folder named test1 wins over one of the same id elsewhere, whatever the names' order;
    a JPEG whose name is not a Kaggle id (01.jpg, cat.1.jpg) is reported, not dropped silently."""
    by_id, ignored = {}, []
    files = [info for info in archive.infolist() if not info.is_dir()]
    for info in sorted(files, key=lambda info: (PurePosixPath(info.filename).parent.name != "test1", info.filename)):
        name = PurePosixPath(info.filename).name
        match = TEST_NAME.fullmatch(name)
        if not match:
            if PurePosixPath(name).suffix.lower() in (".jpg", ".jpeg"):
                ignored.append((info.filename, "not test1/<id>.jpg with the id a plain number"))
            continue
        image_id = int(match.group(1))
        if image_id in by_id:
            ignored.append((info.filename, f"id {image_id} is {by_id[image_id].filename}"))
        else:
            by_id[image_id] = info
    return [(image_id, by_id[image_id]) for image_id in sorted(by_id)], ignored


def write_submission(archive_path, model, out, clip=0.005, tta=1, batch_size=32):
    """Write the submission CSV to `out` from `model` (a catalog name or a .keras file);
    return (rows, skipped [(id, reason)])."""
    classifier, temperature = load_classifier(model), model_temperature(model)
    skipped = []
    with open_archive(archive_path, inner="test1.zip", names=TEST_NAME, param="submission.archive",
                      help=SUBMISSION_HELP) as archive:
        members, ignored = test_members(archive)
        if not members:
            raise StageError(f"submission.archive {archive_path} holds no test1/<id>.jpg images: {SUBMISSION_HELP}")
        sources = (read_source(str(image_id), partial(read_member, archive, info)) for image_id, info in members)
        with atomic_file(out) as tmp, open(tmp, "w") as f:
            f.write("id,label\n")
            for prediction in classify(sources, classifier, batch_size, tta, total=len(members),
                                       desc="submission", temperature=temperature):
                if prediction.p_dog is None:
                    skipped.append((prediction.name, prediction.reason))
                    p_dog = UNREADABLE
                else:
                    p_dog = min(max(prediction.p_dog, clip), 1 - clip)
                f.write(f"{prediction.name},{p_dog:.6g}\n")
    for name, why in ignored[:SHOWN]:
        print(f"ignored {name}: {why}")
    if len(ignored) > SHOWN:
        print(f"ignored {len(ignored) - SHOWN} more images of {archive_path} for the same reasons")
    return len(members), skipped
