"""`precision: auto`: bfloat16 only where the CPU computes it natively, float32 elsewhere."""

import pytest

from dogs_vs_cats import nets, precision
from dogs_vs_cats.catalog import model
from dogs_vs_cats.summary import settings_text

SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
ZEN3 = {"avx2", "fma"}


@pytest.mark.parametrize("flags, isa_cap, expected", [
    (SAPPHIRE_RAPIDS, None, "bfloat16"),
    ({"avx2", "avx512f", "avx512_bf16"}, None, "bfloat16"),  # Zen 4
    (ZEN3, None, "float32"),
    (SAPPHIRE_RAPIDS, "AVX2", "float32"),  # oneDNN capped below bfloat16: emulated
    (SAPPHIRE_RAPIDS, "avx512_core_vnni", "float32"),
    (SAPPHIRE_RAPIDS, "AVX512_CORE_BF16", "bfloat16"),
    (SAPPHIRE_RAPIDS, "ALL", "bfloat16"),
    (None, None, "float32"),  # no /proc/cpuinfo: unknown, so the safe choice
])
def test_auto_is_bfloat16_only_where_native(monkeypatch, flags, isa_cap, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    monkeypatch.setattr(precision, "has_gpu", lambda: False)
    if isa_cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa_cap)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert precision.resolve_precision("auto") == expected
    assert precision.resolve_precision("float32") == "float32"  # an explicit choice stays


def test_auto_is_mixed_float16_on_a_gpu(monkeypatch):
    monkeypatch.setattr(precision, "has_gpu", lambda: True)
    assert precision.resolve_precision("auto") == "mixed_float16"


def test_explicit_bfloat16_without_native_support_warns(monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_flags", lambda: ZEN3)
    monkeypatch.setattr(precision, "has_gpu", lambda: False)
    assert precision.check_precision("bfloat16", "scratch.precision") == "bfloat16"
    assert "scratch.precision bfloat16 is emulated" in capsys.readouterr().err
    assert precision.check_precision("auto", "scratch.precision") == "float32"
    assert capsys.readouterr().err == ""


def test_summary_names_every_setting_other_than_the_books():
    finetuned = model("finetuned")
    book = {"epochs": 100, **finetuned.book_settings, "precision": "float32", "echo": 1, "early_stopping": 0}
    assert settings_text(finetuned, book, {"precision": "float32"}) == "the book's"
    levers = {**book, "epochs": 30, "precision": "auto", "echo": 2, "lr_schedule": "cosine", "lr": 5e-6}
    text = settings_text(finetuned, levers, {"precision": "bfloat16"})
    assert text == "`epochs 30`, `lr 5e-06`, `precision bfloat16 (auto)`, `echo 2`, `lr_schedule cosine`"
    assert settings_text(finetuned, {**book, "precision": "auto"}, {"precision": "float32"}) == "the book's"


def test_a_bfloat16_vgg16_model_with_its_preprocessing_saves_in_float32(tmp_path):
    # recast() rebuilds every layer; preprocessing's keras.ops.flip is an op, not a layer,
    # and takes no dtype (features_augmented and finetune failed at their save in bfloat16).
    import keras
    import numpy as np

    from dogs_vs_cats.nets import conv_base, frozen_base_classifier
    with precision.precision_policy("bfloat16"):
        trained = frozen_base_classifier(conv_base("none", 32), "vgg16", 8)
    saved = nets.recast(trained, "float32")
    saved.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert loaded.get_layer("head").layers[-1].dtype_policy.name == "float32"
    np.testing.assert_allclose(loaded(images), np.asarray(trained(images), dtype="float32"), atol=0.05)
