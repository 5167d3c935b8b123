"""The DVC stages of the Dogs vs. Cats pipeline: one thin entry point per stage, run as
dvc.yaml's `cmd` says (`python -m stages.<name> PATH...`), plus the documented `predict`
command. Each reads params.yaml, calls the library (`dogs_vs_cats`) and writes its
declared outputs; no stage imports another."""
