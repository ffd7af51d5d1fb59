"""`scan --ray` on a real multi-node Ray cluster (ray.cluster_utils.Cluster: a head and two worker nodes on
127.0.0.1, in a network namespace with only the loopback interface) that loses a worker node mid-scan. The scan
is a child process (the driver); no Ray driver runs in pytest's process.

Deterministic under any load: every file's first attempt waits on the worker ($DEEPFAKE_SCAN_TEST_HOLD,
ray_scan.hold_for_test) until the test has killed a node, so the files the test sees started on that node are
certainly still in flight when it dies; their second attempt, on the other node, does not wait.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from loopback import loopback_only_network

WAIT_S = 600  # for a condition on a loaded machine: workers importing torch and loading models take minutes
CLIPS = 4


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    """(the Cluster, its two worker nodes, the hold folder). No driver in this process: the scan runs in a child
    process, so no Ray thread outlives the test in pytest's process."""
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'deepfake-detector[ray]'")
    from ray.cluster_utils import Cluster

    restore = loopback_only_network()
    if restore is None:
        pytest.skip("cannot make a loopback-only network namespace for Ray (needs root or user namespaces)")
    root = tempfile.mkdtemp(prefix="rc-")  # short: Ray's socket paths live under it (108 bytes at most)
    hold = tmp_path / "hold"
    hold.mkdir()
    monkeypatch.setenv("RAY_TMPDIR", root)  # the cluster's address file and sessions: nothing under /tmp/ray
    monkeypatch.setenv("DEEPFAKE_SCAN_TEST_HOLD", str(hold))  # the nodes' processes inherit it
    cluster = None
    try:
        # no CPU on the head: the analysers run on the worker nodes; the driver and the ledger stay on the head
        cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, include_dashboard=False,
                                                                     node_ip_address="127.0.0.1"))
        workers = [cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1") for _ in range(2)]
        cluster.wait_for_nodes(timeout=WAIT_S)
        yield cluster, workers, hold
    finally:
        if cluster is not None:
            cluster.shutdown()
        restore()
        shutil.rmtree(root, ignore_errors=True)  # the sessions' folders


def _started(hold: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(hold.glob("*.json"))]


@pytest.mark.slow
def test_a_lost_node_s_files_are_redone_on_the_other_node_once_each(cluster, faceless_video, lite_models, tmp_path):
    cluster, workers, hold = cluster
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(CLIPS):
        shutil.copy(faceless_video, folder / f"clip_{i}.mp4")
    out = tmp_path / "r.csv"
    directory, video = lite_models
    scan = subprocess.Popen([sys.executable, "-m", "deepfake_core", "scan", str(folder), "--out", str(out),
                             "--models-dir", str(directory), "--video-model", str(video), "--max-samples", "4",
                             "--ray", cluster.address, "--ray-workers", "2", "--ray-max-attempts", "5", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while not _started(hold):  # a first attempt is in flight, and waits
            assert scan.poll() is None, scan.stderr.read()
            assert time.monotonic() < deadline, "no file was started on a worker node"
            time.sleep(0.05)
        node_id = _started(hold)[0]["node"]
        lost = next(node for node in workers if node.node_id == node_id)
        cluster.remove_node(lost, allow_graceful=False)  # SIGKILL: the node and its workers are gone
        in_flight = {m["path"] for m in _started(hold) if m["node"] == node_id and m["attempt"] == 1}
        (hold / "release").touch()  # first attempts elsewhere (and any still queued) go on
        _, err = scan.communicate(timeout=WAIT_S)
    finally:
        scan.kill()
        scan.wait()
    assert scan.returncode == 0, err

    paths = [line.split(",")[1] for line in out.read_text().splitlines()[1:]]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())  # each input exactly once
    assert f"{CLIPS} files, 0 already done, {CLIPS} analysed, 0 errors" in err, err
    retried = [line.split(": ", 1)[1].split(", ") for line in err.splitlines()
               if line.startswith("retried after their worker died: ")]
    assert in_flight and retried and in_flight <= set(retried[0]), (in_flight, err)
    redone = [m for m in _started(hold) if m["path"] in in_flight and m["attempt"] > 1]
    assert {m["path"] for m in redone} == in_flight and all(m["node"] != node_id for m in redone)


@pytest.mark.slow
def test_scan_ray_removes_the_session_folder_of_the_ray_it_started(faceless_video, lite_models, tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'deepfake-detector[ray]'")
    restore = loopback_only_network()
    if restore is None:
        pytest.skip("cannot make a loopback-only network namespace for Ray (needs root or user namespaces)")
    root = Path(tempfile.mkdtemp(prefix="rs-"))
    directory, video = lite_models
    out = tmp_path / "r.csv"
    try:  # a child process: a Ray of its own, started by the scan in this namespace
        p = subprocess.run([sys.executable, "-m", "deepfake_core", "scan", str(faceless_video), "--out", str(out),
                            "--models-dir", str(directory), "--video-model", str(video), "--ray"],
                           env=dict(os.environ, RAY_TMPDIR=str(root)), capture_output=True, text=True,
                           timeout=WAIT_S)
    finally:
        restore()
    try:
        assert p.returncode == 0, p.stderr
        assert "1 files, 0 already done, 1 analysed" in p.stderr
        assert not (root / "ray").exists()  # where that Ray lived: made by it, removed with its session
        assert list(root.iterdir()) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)
