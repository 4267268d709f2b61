"""One run across several machines: two torchrun agents on 127.0.0.1 meeting by c10d
rendezvous (node 0 is ``ablate run``, node 1 is ``ablate run --node-rank 1``) train exactly
what one machine with two processes trains, run after run in plan order."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from ablate.errors import StudyError
from ablate.launch.local import torchrun_command
from ablate.store.db import Store
from ablate.study.spec import parse_launch
from tests.conftest import LIMIT, ROOT, digits_config, read_metrics, read_result
from tests.test_orchestrator import write_study


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def study(data: Path, name: str, launch: dict[str, Any], variants: list[Any]) -> dict[str, Any]:
    base = digits_config(data, epochs=2)
    base.pop("seed")
    return {"name": name, "base": base, "launch": launch, "seeds": [0], "variants": variants}


def ablate_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ablate", *args, "--cpu-threads", "1"]


def test_two_nodes_train_what_one_node_of_two_processes_trains(
    digits_dir: Path, tmp_path: Path
) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    two = write_study(tmp_path / "two.yaml", study(
        digits_dir, "two_nodes", {"nnodes": 2, "nproc_per_node": 1, "rdzv_endpoint": endpoint},
        [{"name": "lr 0.05", "set": {"optim.lr": 0.05}}]))
    one = write_study(tmp_path / "one.yaml", study(
        digits_dir, "one_node", {"nproc_per_node": 2}, []))
    db, ref_db = tmp_path / "two.db", tmp_path / "one.db"
    runs, ref_runs = tmp_path / "runs", tmp_path / "ref_runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    common = ["--db", f"sqlite:///{db}", "--runs-dir", str(runs)]
    # Node 1 first: it waits for node 0 to claim each run, then joins it.
    cmds = [ablate_cmd("run", str(two), *common, "--node-rank", "1"),
            ablate_cmd("run", str(two), *common),
            ablate_cmd("run", str(one), "--db", f"sqlite:///{ref_db}", "--runs-dir",
                       str(ref_runs))]
    procs = [subprocess.Popen(c, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
             for c in cmds]
    try:
        outs = [p.communicate(timeout=LIMIT)[0] for p in procs]
    finally:  # a hung rendezvous must not outlive the test
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert [p.returncode for p in procs] == [0, 0, 0], "\n---\n".join(o[-3000:] for o in outs)
    assert "node 1 joined 2 runs (0 failed here)" in outs[0], outs[0]
    assert "2 trained, 0 reused, 0 failed" in outs[1], outs[1]

    store = Store(f"sqlite:///{db}", create=False)
    (base_run, lr_run) = store.study_runs("two_nodes")
    assert [r.status for r in (base_run, lr_run)] == ["succeeded", "succeeded"]
    assert [r.attempts for r in (base_run, lr_run)] == [1, 1]
    for r in (base_run, lr_run):
        out = Path(r.run_dir)
        assert read_result(out)["world_size"] == 2
        node0 = (out / "launch.log").read_text()
        node1 = (out / "launch.node1.log").read_text()
        for log in (node0, node1):  # both agents of the run, and only of this run
            assert f"--rdzv-backend c10d --rdzv-endpoint {endpoint} --rdzv-id {r.hash}" in log
            assert "--nnodes 2 --nproc-per-node 1" in log

    # The same config, hence the same run id, in both studies: compare them.
    (ref_run,) = Store(f"sqlite:///{ref_db}", create=False).study_runs("one_node")
    assert ref_run.hash == base_run.hash
    got, want = Path(base_run.run_dir), Path(ref_run.run_dir)
    assert read_result(want)["world_size"] == 2
    keys = ("epoch", "step", "train_loss", "val_loss", "top1", "top5", "lr")
    assert [{k: m[k] for k in keys} for m in read_metrics(got)] == [
        {k: m[k] for k in keys} for m in read_metrics(want)]
    a = torch.load(got / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(want / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_multi_node_command_and_validation() -> None:
    cmd = torchrun_command(Path("r/run.yaml"), Path("r"), 8, 2, "node0:29400", run_id="abc")
    i = cmd.index("--rdzv-id")
    assert cmd[i + 1] == "abc" and "--standalone" not in cmd
    assert cmd[cmd.index("--nnodes") + 1] == "2" and cmd[cmd.index("--nproc-per-node") + 1] == "8"
    assert "--standalone" in torchrun_command(Path("r/run.yaml"), Path("r"), 2)
    launch = parse_launch({"nnodes": 2, "nproc_per_node": 8, "rdzv_endpoint": "node0:29400"})
    assert launch.world_size == 16
    for raw, message in [
        ({"nnodes": 2}, "launch.rdzv_endpoint: required when nnodes > 1"),
        ({"nnodes": 2, "rdzv_endpoint": "node0"}, "expected HOST:PORT"),
        ({"nnodes": 0}, "must be at least 1"),
        ({"partition": "gpu"}, "launch.partition: only with backend: slurm"),
    ]:
        with pytest.raises(StudyError, match=message):
            parse_launch(raw)


def test_follower_refuses_what_it_cannot_follow(digits_dir: Path, tmp_path: Path) -> None:
    from ablate.errors import AblateError
    from ablate.launch.orchestrator import Follower, Orchestrator
    from ablate.study.spec import load_study

    one = load_study(write_study(tmp_path / "one.yaml", study(
        digits_dir, "one", {"nproc_per_node": 1}, [])))
    store = Store(f"sqlite:///{tmp_path / 'f.db'}")
    with pytest.raises(AblateError, match="only for a study with backend: local and"):
        Follower(one, store, tmp_path / "runs", node_rank=1)
    two = load_study(write_study(tmp_path / "two.yaml", study(
        digits_dir, "two", {"nnodes": 2, "rdzv_endpoint": "127.0.0.1:1234"}, [])))
    with pytest.raises(AblateError, match="--node-rank 2: expected 1 to 1"):
        Follower(two, store, tmp_path / "runs", node_rank=2)
    with pytest.raises(AblateError, match="one run at a time"):
        Orchestrator(two, store, tmp_path / "runs", max_parallel=2)
