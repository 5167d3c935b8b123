"""`make report`: one self-contained HTML page of every `dvc plots` plot."""
