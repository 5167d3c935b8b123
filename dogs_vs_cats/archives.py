"""Image archives read in place (Kaggle's competition zip holding `train.zip` or
`test1.zip`, or that inner zip itself) and every member checked before it is used: unsafe
names, encrypted or oversized members, images that are not images, or that need converting.
"""

import io
import re
import stat
import tempfile
import warnings
import zipfile
import zlib
from contextlib import contextmanager, ExitStack
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from dogs_vs_cats.catalog import CLASSES, IMAGE_NAME
from dogs_vs_cats.errors import not_a_file, StageError

# The largest member read: Kaggle's photos are under 1 MB; a member the zip header says is
# larger is refused before a byte is inflated, and reading stops there if the header lied.
MAX_MEMBER_BYTES = 64 * 2**20
REZIP_HELP = "re-zip it with plain Deflate (`zip -r`), or extract it and point {param} at the inner zip"
DOWNLOAD_HELP = ("download the competition with `kaggle competitions download -c dogs-vs-cats -p data/raw`, "
                 "run `dvc add data/raw/dogs-vs-cats.zip` and set data.archive: data/raw/dogs-vs-cats.zip "
                 "in params.yaml (or keep data.archive: data/sample/train.zip and run `dvc repro sample`)")
SUBMISSION_HELP = ("download the competition with `kaggle competitions download -c dogs-vs-cats -p data/raw` and "
                   "set submission.archive: data/raw/dogs-vs-cats.zip in params.yaml (or keep "
                   "data/sample/test1.zip and run `dvc repro sample`)")


class BadImage(Exception):
    """An archive member that cannot be used; the message is the reason."""


class _Slice(io.RawIOBase):
    """A read-only, seekable window onto part of a file: a stored zip inside a zip."""

    def __init__(self, file, start, size):
        self._file, self._start, self._size, self._pos = file, start, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer):
        count = max(0, min(len(buffer), self._size - self._pos))
        self._file.seek(self._start + self._pos)
        data = self._file.read(count)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _member_data_offset(file, info):
    """Where a member's bytes start: after its local header, whose extra field may differ."""
    file.seek(info.header_offset)
    header = file.read(30)
    if header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    name_length = int.from_bytes(header[26:28], "little")
    extra_length = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_length + extra_length


def _copy_member(outer, info, target):
    """Inflate one member of `outer` into the open file `target`, with a progress bar."""
    with outer.open(info) as source, tqdm(total=info.file_size, unit="B", unit_scale=True,
                                           desc=f"reading {info.filename}") as bar:
        while chunk := source.read(1 << 20):
            target.write(chunk)
            bar.update(len(chunk))


@contextmanager
def open_archive(path, inner="train.zip", names=IMAGE_NAME, param="data.archive", help=DOWNLOAD_HELP):
    """Open an images archive: a bare `inner` zip (train.zip, test1.zip), or the competition
    zip holding it. `names` matches the images' file names; `param` and `help` go into errors."""
    path = Path(path)
    if path.is_dir():
        raise StageError(f"{param} {path} is a folder: give the zip itself (Kaggle's competition zip or the {inner} "
                         f"inside it), which is read in place")
    if not path.is_file():
        raise StageError(f"{param} {path} {not_a_file(path)}: {help}")
    with ExitStack() as stack:
        try:
            outer = stack.enter_context(zipfile.ZipFile(path))
        except (zipfile.BadZipFile, OSError) as e:
            raise StageError(f"{param} {path} is not a readable zip archive ({e}): {help}") from None
        members = outer.namelist()
        nested_names = [n for n in members if PurePosixPath(n).name == inner]
        if any(names.fullmatch(PurePosixPath(n).name) for n in members) or not nested_names:
            yield outer
            return
        info = outer.getinfo(nested_names[0])
        where = f"{info.filename} inside {path}"
        if info.flag_bits & 0x1:
            raise StageError(f"{where} is encrypted (password-protected): {REZIP_HELP.format(param=param)}")
        if info.compress_type == zipfile.ZIP_STORED:
            file = stack.enter_context(open(path, "rb"))
            view = _Slice(file, _member_data_offset(file, info), info.file_size)
            nested = io.BufferedReader(view, buffer_size=1 << 20)
        else:
            # A compressed member cannot be seeked cheaply: copy the one inner archive
            # (not its images) to a temporary file that disappears afterwards.
            nested = stack.enter_context(tempfile.TemporaryFile())
            try:
                _copy_member(outer, info, nested)
            except NotImplementedError as e:  # Deflate64, what Windows Explorer writes for large files
                raise StageError(f"{where} uses a compression Python cannot read ({e}): "
                                 f"{REZIP_HELP.format(param=param)}") from None
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                raise StageError(f"{where} could not be read ({e}): {help}") from None
            nested.seek(0)
        try:
            yield stack.enter_context(zipfile.ZipFile(nested))
        except zipfile.BadZipFile as e:
            raise StageError(f"{where} is not a readable zip archive ({e}): {help}") from None


def _unsafe_reason(info):
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or "\\" in name or ".." in parts or re.match(r"[A-Za-z]:", name):
        return "unsafe path (absolute or with '..')"
    return None


def list_candidates(archive):
    """Group usable members by class and index; count what is ignored and why."""
    candidates = {kind: {} for kind in CLASSES}
    skipped, ignored = [], []
    for info in sorted(archive.infolist(), key=lambda i: i.filename):
        if info.is_dir():
            continue
        match = IMAGE_NAME.fullmatch(PurePosixPath(info.filename).name)
        if not match:
            ignored.append(info.filename)
            continue
        reason = _unsafe_reason(info)
        if reason:
            skipped.append({"member": info.filename, "reason": reason})
            continue
        kind, index = match.group(1), int(match.group(2))
        if index in candidates[kind]:
            skipped.append({"member": info.filename, "reason": f"duplicate of {candidates[kind][index].filename}"})
            continue
        candidates[kind][index] = info
    return candidates, skipped, ignored


WIDE_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}  # 16-bit, 32-bit integer and float grey


def to_8_bits(image):
    """A 16-bit, 32-bit integer or float grey image as 8-bit grey ("L"), scaled by the range
    its values use: 16 bits (0..65535, also in a 32-bit container), 32 bits (0..2**31-1),
    floats in 0..1 or 0..255. Pillow's own conversion clips instead: a 16-bit mid grey
    becomes white. Anything else raises BadImage."""
    import numpy as np
    values = np.asarray(image, dtype=np.float64)
    low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if low < 0 or not np.isfinite(high):
        raise BadImage(f"{image.mode} image with values outside 0..{high:g}: save it as 8-bit")
    if image.mode == "F":
        if high > 255:
            raise BadImage(f"float image with values up to {high:g}, not 0..1 or 0..255: save it as 8-bit")
        scale = 255.0 if high <= 1 else 1.0
    else:
        scale = 255 / 65535 if image.mode.startswith("I;16") or high <= 65535 else 255 / (2**31 - 1)
    converted = Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), mode="L")
    converted.info["from"] = f"{image.format} {image.mode}"
    return converted


def check_image(data):
    """Decode once. Return (JPEG bytes to write, note or None); raise BadImage if unusable."""
    if not data:
        raise BadImage("empty file")
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        # Pillow raises above twice MAX_IMAGE_PIXELS and only warns above it: both mean no.
        if image.width * image.height > Image.MAX_IMAGE_PIXELS:
            raise Image.DecompressionBombError(
                f"{image.width}x{image.height} pixels exceeds Pillow's limit of {Image.MAX_IMAGE_PIXELS}")
        image.load()
    except Image.DecompressionBombError as e:
        raise BadImage(f"too large: {e}".split(", could be")[0]) from None  # not Pillow's "DOS attack"
    except UnidentifiedImageError:
        raise BadImage("not an image") from None
    except (OSError, SyntaxError, ValueError, zlib.error) as e:
        raise BadImage(f"corrupt image ({e})") from None
    if image.format == "JPEG" and image.mode == "RGB":
        return data, None
    note = f"{image.format} {image.mode} converted to RGB JPEG"
    if image.mode in WIDE_MODES:
        image = to_8_bits(image)
        note = f"{image.info['from']} scaled to 8 bits and converted to RGB JPEG"
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue(), note


def read_member(archive, info, limit=MAX_MEMBER_BYTES):
    """A member's bytes; BadImage if it is encrypted, unreadable or inflates past `limit`."""
    too_large = f"too large: inflates to more than {limit:,} bytes"
    if info.file_size > limit:
        raise BadImage(too_large)
    if info.flag_bits & 0x1:
        raise BadImage("encrypted member (password-protected)")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as e:
        raise BadImage(f"unreadable archive member ({e})") from None
    if len(data) > limit:
        raise BadImage(too_large)
    return data


@contextmanager
def quiet_bomb_warnings():
    """Inside this block Pillow's DecompressionBombWarning is not printed: check_image
    rejects what Pillow would only warn about, so the warning is noise. Entered by the
    thread that hands images to check_image's worker threads (warnings.catch_warnings is
    not thread-safe), around the work."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
