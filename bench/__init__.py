"""Measurements by hand, each run from the checkout as `python -m bench.<name> --help`; they
use the library as the stages do (dogs_vs_cats.workspace for throwaway DVC workspaces)."""
