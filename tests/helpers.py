"""Small inputs the tests build: JPEG bytes, zip archives in Kaggle's layout, params
sections checked by the schema."""

import io
import zipfile

from PIL import Image
from ruamel.yaml import YAML

from dogs_vs_cats.config import validate
from tests.workspace import REPO


def jpeg_bytes(colour=(200, 30, 30), size=(40, 30), mode="RGB", fmt="JPEG"):
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    """members: {name: bytes} or {name: (bytes, external_attr)}."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            if isinstance(data, tuple):
                data, info.external_attr = data
            archive.writestr(info, data)
    return path


def kaggle_members(per_class, colours=((90, 60, 40), (220, 220, 210))):
    return {f"train/{kind}.{i}.jpg": jpeg_bytes(colour, (30 + i % 7, 40))
            for kind, colour in zip(("cat", "dog"), colours) for i in range(per_class)}


def section(name, **values):
    """The committed params.yaml's section `name` with `values` changed, checked by the
    schema as load_params checks it (StageError naming every bad key) and typed."""
    params = YAML(typ="safe", pure=True).load((REPO / "params.yaml").read_text())
    params[name].update(values)
    return getattr(validate(params), name)
