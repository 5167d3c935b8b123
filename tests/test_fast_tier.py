"""The fast tier's guard (tests/conftest.py): which runs it watches, and what it stops."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FastTierPopen, leaves_out_slow, program


def test_the_guard_watches_the_runs_that_leave_the_slow_tests_out():
    assert leaves_out_slow("not slow") and leaves_out_slow("not slow and not other")
    assert not leaves_out_slow("") and not leaves_out_slow("slow") and not leaves_out_slow("slow or not slow")


def test_the_guard_stops_dvc_and_make_and_lets_the_rest_through(monkeypatch):
    started = (["dvc", "repro"], "/venv/bin/dvc status", [sys.executable, "-m", "dvc", "exp", "run"],
               [Path("/usr/bin/make"), "-n", "run"], [sys.executable, "-m", "stages.split"], ["git", "init"])
    assert [program(args) for args in started] == ["dvc", "dvc", "dvc", "make", "stages.split", "git"]
    monkeypatch.setattr(subprocess, "Popen", FastTierPopen)
    for args in started[:4]:
        with pytest.raises(pytest.fail.Exception, match="mark it @pytest.mark.slow"):
            subprocess.run(args)
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
