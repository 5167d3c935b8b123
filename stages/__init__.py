"""DVC stages of the Dogs vs. Cats pipeline: one module per stage, run as `python -m stages.<name>`."""
