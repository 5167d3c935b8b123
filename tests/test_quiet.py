"""The stages' log: TensorFlow's start-up chatter stays off it (dogs_vs_cats.quiet), the
project's own lines and real errors stay on it, and DOGS_VS_CATS_VERBOSE=1 brings the
chatter back."""

import os
import re
import subprocess
import sys

import pytest

from dogs_vs_cats import quiet
from tests.workspace import copy_project, environment, stage_command

# TensorFlow's start-up lines: absl's notice, absl-formatted lines at any level, the CPU
# instructions notice's second line.
CHATTER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWE]\d{4} \d\d:\d\d:[\d.]+ +\d+ "
                     r"\S+:\d+\]|To enable the following instructions)", re.MULTILINE)


def chatter(text):
    return CHATTER.findall(text)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("quiet") / "project")


def run(project, command, **values):
    """`command` in `project` with these environment variables and no other log settings."""
    env = environment()
    for name in ("TF_CPP_MIN_LOG_LEVEL", quiet.VERBOSE):  # what the test process may carry
        env.pop(name, None)
    result = subprocess.run(command, cwd=project, env=dict(env, **values), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def test_a_stage_that_loads_tensorflow_logs_none_of_its_start_up_lines(project):
    # `weights` imports TensorFlow and builds VGG16: the import, device discovery (cuInit) and work.
    result = run(project, stage_command("weights", project / "params.yaml"))
    assert chatter(result.stderr) == [], result.stderr
    assert "wrote models/vgg16_notop.weights.h5" in result.stdout  # the project's own lines stay


def test_the_verbose_switch_brings_the_start_up_lines_back(project):
    # --help imports TensorFlow and computes nothing.
    result = run(project, ["python", "-m", "stages.features", "--help"], DOGS_VS_CATS_VERBOSE="1")
    assert len(chatter(result.stderr)) >= 2, result.stderr  # absl's notice at least, once per native library
    assert result.stdout.startswith("usage: python -m stages.features")


@pytest.mark.parametrize("values, verbose", [({}, False), ({"DOGS_VS_CATS_VERBOSE": "0"}, False),
                                             ({"TF_CPP_MIN_LOG_LEVEL": "3"}, False),
                                             ({"DOGS_VS_CATS_VERBOSE": "1"}, True),
                                             ({"TF_CPP_MIN_LOG_LEVEL": "0"}, True)])
def test_a_users_log_level_wins(monkeypatch, values, verbose):
    for name in ("TF_CPP_MIN_LOG_LEVEL", quiet.VERBOSE):
        monkeypatch.setenv(name, "")  # so that monkeypatch puts back what was there, or nothing
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert quiet.verbose() == verbose
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    quiet.quiet_tensorflow()
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == values.get("TF_CPP_MIN_LOG_LEVEL", None if verbose else "2")


START_UP = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
            b"I0000 00:00:1796681407.598346    8656 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
            b"GPU will not be used.\n"]
CUINIT = (b"E0000 00:00:1796681414.801608    8656 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
          b"Failed call to cuInit: UNKNOWN ERROR (303)\n")
REAL = [b"E0000 00:00:1796681414.801608    8656 op_kernel.cc:1] a real error\n", b"a Python warning\n",
        b"W0000 00:00:1796681414.801608    8656 other.cc:2] a warning\n"]


@pytest.mark.parametrize("driver", [False, True])
def test_only_the_start_up_lines_are_dropped_and_cuinit_only_without_a_driver(capfd, monkeypatch, driver):
    monkeypatch.setattr(quiet, "nvidia_driver", lambda: driver)
    with quiet.FilteredStderr():
        for line in [*START_UP, REAL[0], CUINIT, *REAL[1:], b"no newline"]:
            os.write(2, line)
    os.write(2, b", after\n")
    expected = b"".join([REAL[0], *([CUINIT] if driver else []), *REAL[1:]]).decode()
    assert capfd.readouterr().err == expected + "no newline, after\n"


def test_restore_gives_stderr_back_at_once_and_only_once(capfd):
    with quiet.FilteredStderr():
        os.write(2, START_UP[1] + b"before\n")
        quiet.FilteredStderr.restore()  # what a signal handler about to exit does
        os.write(2, START_UP[1])  # straight to stderr now: nothing filters it
    quiet.FilteredStderr.restore()
    assert capfd.readouterr().err == "before\n" + START_UP[1].decode()
