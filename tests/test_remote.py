"""Sharing work through a DVC remote: a real S3 server (moto's, on loopback) and two teammates."""

import hashlib
import socket

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.workspace import copy_workspace, dvc, run, stages_run, update_params

pytestmark = pytest.mark.slow  # the whole DAG through DVC

BUCKET = "team-dvc-cache"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def use_remote(workspace, endpoint, bucket=BUCKET, name="team"):
    """The committed part of a remote (where), and the local part (credentials, never in git)."""
    dvc(workspace, "remote", "add", "-f", "-d", name, f"s3://{bucket}/dogs-vs-cats")
    dvc(workspace, "remote", "modify", name, "endpointurl", endpoint)
    dvc(workspace, "remote", "modify", "--local", name, "access_key_id", "test")
    dvc(workspace, "remote", "modify", "--local", name, "secret_access_key", "test")


def digests(workspace, *folders):
    return {str(p.relative_to(workspace)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted((workspace / folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def teammates(first_run, tmp_path_factory, s3_endpoint):
    root = tmp_path_factory.mktemp("team")
    alice = copy_workspace(first_run[0], root / "alice")
    use_remote(alice, s3_endpoint)
    assert "test" not in (alice / ".dvc/config").read_text()  # credentials stay in config.local
    run(alice, "git", "add", "-A")
    run(alice, "git", "commit", "-qm", "alice's remote")
    pushed = dvc(alice, "push")
    assert "pushed" in pushed.stdout

    run(root, "git", "clone", "-q", str(alice), "bob")
    bob = root / "bob"
    run(bob, "git", "config", "user.email", "bob@example.com")
    run(bob, "git", "config", "user.name", "bob")
    use_remote(bob, s3_endpoint)
    return alice, bob


def test_teammate_pulls_instead_of_recomputing(teammates):
    alice, bob = teammates
    missing = dvc(bob, "status", "-c").stdout
    assert "deleted:" in missing and "models/finetuned.keras" in missing  # on the remote, not here yet
    assert "models/vgg16_notop.weights.h5" in missing  # the weights travel too: no download
    dvc(bob, "pull")
    assert stages_run(dvc(bob, "repro").stdout) == set()
    assert "up to date" in dvc(bob, "status").stdout
    assert "in sync" in dvc(bob, "status", "-c").stdout  # the remote holds everything bob has
    folders = ("models", "metrics", "data/features", "data/split")
    assert digests(bob, *folders) == digests(alice, *folders)


def test_branch_results_travel_without_recomputation(teammates):
    alice, bob = teammates
    run(bob, "git", "checkout", "-q", "-b", "bob-head-lr")
    update_params(bob / "params.yaml", {"train_head": {"lr": 1.0e-3}})
    assert stages_run(dvc(bob, "repro").stdout) == {"check", "train_head", "evaluate@head", "summary"}
    run(bob, "git", "add", "-A")
    run(bob, "git", "commit", "-qm", "head lr 1e-3")
    dvc(bob, "push")
    run(bob, "git", "push", "-q", "origin", "bob-head-lr")

    run(alice, "git", "checkout", "-q", "bob-head-lr")
    dvc(alice, "pull")
    assert stages_run(dvc(alice, "repro").stdout) == set()
    diff = dvc(alice, "metrics", "diff", "main", "--json").stdout
    assert "head.loss" in diff
    assert digests(alice, "models") == digests(bob, "models")
    run(alice, "git", "checkout", "-q", "main")
    dvc(alice, "checkout")


def add_local_remote(workspace, name, url, endpoint):
    dvc(workspace, "remote", "add", "--local", name, url)
    for key, value in (("endpointurl", endpoint), ("access_key_id", "test"), ("secret_access_key", "test")):
        dvc(workspace, "remote", "modify", "--local", name, key, value)


@pytest.mark.parametrize("problem", ["unreachable", "wrong bucket"])
def test_broken_remote_is_a_clear_error_and_loses_nothing(teammates, s3_endpoint, tmp_path, problem):
    alice, _ = teammates
    endpoint = f"http://127.0.0.1:{free_port()}" if problem == "unreachable" else s3_endpoint
    url = f"s3://{BUCKET if problem == 'unreachable' else 'no-such-bucket'}/dogs-vs-cats"

    before = digests(alice, "models", "data/features", "metrics")
    add_local_remote(alice, "broken", url, endpoint)
    try:
        pushed = dvc(alice, "push", "-r", "broken", check=False)
    finally:
        dvc(alice, "remote", "remove", "--local", "broken")
    assert pushed.returncode != 0 and "ERROR" in pushed.stderr and "Traceback" not in pushed.stderr
    assert digests(alice, "models", "data/features", "metrics") == before
    assert "up to date" in dvc(alice, "status").stdout

    run(tmp_path, "git", "clone", "-q", str(alice), "carol")
    carol = tmp_path / "carol"
    add_local_remote(carol, "broken", url, endpoint)
    pulled = dvc(carol, "pull", "-r", "broken", check=False)
    assert pulled.returncode != 0 and "ERROR" in pulled.stderr and "Traceback" not in pulled.stderr
    use_remote(carol, s3_endpoint)  # the right remote still works afterwards: nothing half-written in the way
    dvc(carol, "pull")
    assert "up to date" in dvc(carol, "status").stdout
    assert digests(carol, "models", "data/features") == digests(alice, "models", "data/features")
