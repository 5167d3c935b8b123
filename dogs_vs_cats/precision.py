"""The arithmetic a model computes in: the `precision` params (float32, bfloat16,
mixed_float16) as Keras dtype policies, checked against this machine, and saved models
brought back to float32."""

import contextlib
import os
import sys
from pathlib import Path

import keras
import tensorflow as tf

from dogs_vs_cats.errors import StageError

# A `precision` param -> the Keras dtype policy layers are built with. The mixed policies
# keep float32 weights and compute in 16 bits.
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "mixed_float16": "mixed_float16"}
CPU_BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16"}  # /proc/cpuinfo flags of native bfloat16 arithmetic
# oneDNN's instruction-set levels, oldest first: ONEDNN_MAX_CPU_ISA caps the level its kernels
# use (AVX2 makes a CPU with AVX512_BF16 compute as one without it).
ONEDNN_ISA_LEVELS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                     "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10_1_512_AMX",
                     "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16")


def has_gpu():
    return bool(tf.config.list_physical_devices("GPU"))


def cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None  # not Linux: unknown
    return set(" ".join(line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags")).split())


def native_bfloat16():
    """Whether TensorFlow computes bfloat16 in hardware here: the CPU has AVX512_BF16 or AMX,
    and ONEDNN_MAX_CPU_ISA (if set) does not cap oneDNN below AVX512_CORE_BF16."""
    flags = cpu_flags()
    if not flags or not flags & CPU_BFLOAT16_FLAGS:
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap not in ONEDNN_ISA_LEVELS:  # unset, ALL, DEFAULT or a level newer than this list
        return True
    return ONEDNN_ISA_LEVELS.index(cap) >= ONEDNN_ISA_LEVELS.index("AVX512_CORE_BF16")


def resolve_precision(precision):
    """What a `precision` param runs as here: `auto` is mixed_float16 on a GPU, bfloat16 on a
    CPU that computes it natively, float32 elsewhere (where bfloat16 is emulated and slower)."""
    if precision != "auto":
        return precision
    if has_gpu():
        return "mixed_float16"
    return "bfloat16" if native_bfloat16() else "float32"


def check_precision(precision, name="features.precision"):
    """A `precision` param's value as it runs on this machine (`auto` resolved): an error
    where it cannot run, a warning where it runs slowly."""
    precision = resolve_precision(precision)
    if precision == "float32" or has_gpu():
        return precision
    if precision == "mixed_float16":
        raise StageError(f"params.yaml: {name} is mixed_float16, which needs a GPU and none was found: "
                         "use bfloat16 (CPUs with AVX512_BF16 or AMX) or float32")
    if cpu_flags() is not None and not native_bfloat16():
        print(f"warning: this CPU has no native bfloat16 (avx512_bf16 or amx_bf16, or ONEDNN_MAX_CPU_ISA caps "
              f"it), so {name} bfloat16 is emulated and slower than float32: use auto", file=sys.stderr)
    return precision


@contextlib.contextmanager
def precision_policy(precision, name="features.precision"):
    """Layers built inside this block compute in `precision` (a `precision` param's value)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISION_POLICIES[check_precision(precision, name)])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
