"""Measurements by hand, each run from the checkout as `python -m bench.<name> --help`; they
use the library as the stages do (dogs_vs_cats.workspace for throwaway DVC workspaces)."""

import sys

from dogs_vs_cats.quiet import quiet_tensorflow

# `python -m bench.<name>` (and the child processes it starts), not a test's import: the
# stages' quiet log (DOGS_VS_CATS_VERBOSE=1 brings TensorFlow's start-up lines back).
if sys.argv[:1] == ["-m"]:
    quiet_tensorflow()
