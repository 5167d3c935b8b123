"""Chapter 5 of Deep Learning with Python (Dogs vs. Cats with VGG16) as a library.

The DVC stages in `stages/` are thin entry points over it: each reads params.yaml once
(`config.load_params`, typed and validated), takes its paths from dvc.yaml's `cmd` and
calls the modules here. `catalog` names the models, stages, classes and the book's figures.
"""
