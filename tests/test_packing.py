"""Packing one node: runs of different sizes share --gpus 0-7; a run of 4 waits for 4 free
GPUs while smaller runs fill the gaps, and no GPU is ever handed to two runs at once.

No GPU and no training: the launcher is the real one up to the point where it would start
torchrun, and records the CUDA_VISIBLE_DEVICES it would have given the run instead."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ablate.errors import AblateError
from ablate.launch import local as launch
from ablate.launch import orchestrator as orchestrate
from ablate.launch.local import DevicePool, LocalLauncher, parse_gpus
from ablate.launch.orchestrator import Orchestrator
from ablate.store.db import Status, Store
from ablate.study.spec import RunSpec, load_study
from tests.test_orchestrator import study_dict, write_study
from zoo import contract


def test_device_pool_takes_the_lowest_free_gpus_and_returns_them() -> None:
    pool = DevicePool([0, 1, 2, 3, 4, 5, 6, 7], slots=1)
    assert pool.take(4) == [0, 1, 2, 3]
    assert pool.take(2) == [4, 5]
    assert not pool.can_take(4) and pool.take(4) is None and pool.free == [6, 7]
    pool.give([0, 1, 2, 3])
    assert pool.free == [0, 1, 2, 3, 6, 7] and pool.take(4) == [0, 1, 2, 3]
    assert pool.fits_ever(8) and not pool.fits_ever(9)
    cpu = DevicePool(None, slots=2)  # no GPUs: --max-parallel slots, one per run
    assert cpu.take(8) == [0] and cpu.take(1) == [1] and cpu.take(1) is None
    assert cpu.fits_ever(64)


def test_gpus_are_numbered_as_this_process_sees_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CUDA_VISIBLE_DEVICES=5,7 GPU 0 is GPU 5: a run on device 1 gets '7', never
    the machine's GPU 1, which the user hid."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert parse_gpus("0-1") == [0, 1]
    gpu = LocalLauncher(use_gpus=True, threads=1)
    assert gpu.env([1])["CUDA_VISIBLE_DEVICES"] == "7"
    assert gpu.env([0, 1])["CUDA_VISIBLE_DEVICES"] == "5,7"
    with pytest.raises(AblateError, match=r"--gpus '0-2': GPU 2 is not visible.*5,7"):
        parse_gpus("0-2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8c1f,GPU-33ab,-1,3")  # cut at -1
    assert LocalLauncher(use_gpus=True, threads=1).env([1])["CUDA_VISIBLE_DEVICES"] == "GPU-33ab"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu.env([2, 3])["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_no_gpu_driver_means_no_gpus_without_importing_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Autodetection asks torch only where a GPU driver exists; elsewhere (and when
    CUDA_VISIBLE_DEVICES hides every GPU) the answer is none, with no torch import."""
    import builtins

    real_import = builtins.__import__

    def no_torch(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torch" or name.startswith("torch."):
            raise AssertionError("gpu_count imported torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(launch, "GPU_DRIVER_PATHS", ("/nonexistent/nvidia",))
    assert parse_gpus(None) is None
    monkeypatch.setattr(launch, "GPU_DRIVER_PATHS", ("/",))  # a driver, but all hidden
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert parse_gpus(None) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # visible GPUs: only torch can count
    with pytest.raises(AssertionError, match="imported torch"):
        parse_gpus(None)


class FakeProc:
    """Stands in for torchrun: 'trains' for ``ticks`` polls, then writes a result."""

    def __init__(self, run: dict[str, Any], ticks: int) -> None:
        self.run, self.left, self.pid, self.rc = run, ticks, -1, None

    def poll(self) -> int | None:
        if self.rc is None:
            self.left -= 1
            if self.left <= 0:
                _write_result(Path(self.run.run_dir), self.run.nproc_per_node)
                self.rc = 0
        return self.rc

    def wait(self, timeout: float | None = None) -> int:
        self.left = 0
        return self.poll() or 0


def _write_result(out: Path, world_size: int) -> None:
    """What a trainer that succeeded writes last, through the run directory's contract."""
    result = contract.RunResult(
        status="succeeded", error=None, hash=out.name, model="resnet20", epochs=1,
        epochs_completed=1, final=contract.Final(top1=50.0, top5=90.0),
        best=contract.Best(top1=50.0, top5=90.0, epoch=1), params=1, macs=1,
        wall_seconds=1.0, device_hours=0.0, images_per_s=1.0, world_size=world_size,
        device_type="cuda")
    contract.write_json(out / contract.RESULT, result.to_dict())


class RecordingLauncher(LocalLauncher):
    """The local launcher, except that spawning records instead of starting torchrun."""

    def __init__(self, ticks: dict[str, int]) -> None:
        super().__init__(use_gpus=True, threads=1)
        self.ticks = ticks
        self.procs: dict[str, FakeProc] = {}
        self.starts: list[tuple[str, list[int], list[str]]] = []  # (hash, visible, running)

    def start(self, run: RunSpec, devices: list[int]) -> Any:
        self._run = run
        return super().start(run, devices)

    def spawn(self, cmd: list[str], env: dict[str, str], log: Any) -> FakeProc:
        run = self._run
        visible = [int(d) for d in env["CUDA_VISIBLE_DEVICES"].split(",")]
        assert cmd[cmd.index("--nproc-per-node") + 1] == str(run.nproc_per_node)
        running = [h for h, p in self.procs.items() if p.rc is None]
        self.starts.append((run.hash, visible, running))
        self.procs[run.hash] = FakeProc(run, self.ticks[run.hash])
        return self.procs[run.hash]


def test_mixed_sizes_are_packed_onto_free_gpus_as_runs_finish(
    digits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(orchestrate, "POLL_S", 0.001)
    spec = study_dict(digits_dir, seeds=[0, 1, 2])  # 3 variants x 3 seeds: 9 runs
    study = load_study(write_study(tmp_path / "s.yaml", spec))
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    launcher = RecordingLauncher({})
    # Plan order A..F with these sizes and durations (in polls); the last 3 are 1-GPU runs.
    sizes = [4, 2, 4, 1, 1, 2, 8, 1, 1]
    ticks = [30, 10, 20, 50, 50, 10, 5, 5, 5]
    specs = [replace(r, nproc_per_node=n)
             for r, n in zip(study.run_specs(tmp_path / "runs"), sizes, strict=True)]
    orch = Orchestrator(study, store, tmp_path / "runs", gpus=list(range(8)),
                        launcher=launcher, specs=specs)
    assert orch.max_parallel == 8  # with --gpus, the GPUs are the limit
    for row, t in zip(orch.rows, ticks, strict=True):
        launcher.ticks[row.hash] = t
    name = {r.hash: "ABCDEFGHI"[i] for i, r in enumerate(orch.rows)}
    outcome = orch.run()
    assert outcome.succeeded == 9 and outcome.failed == 0

    order = [name[h] for h, _, _ in launcher.starts]
    # A(4) B(2) start; C(4) does not fit, so D(1) and E(1) fill the last two GPUs; F(2) takes
    # B's GPUs when B ends; C waits for A's four; G (8) waits for the whole node.
    assert order[:5] == ["A", "B", "D", "E", "F"], order
    visible = {name[h]: v for h, v, _ in launcher.starts}
    assert visible["A"] == [0, 1, 2, 3] and visible["B"] == [4, 5]
    assert visible["D"] == [6] and visible["E"] == [7] and visible["F"] == [4, 5]
    assert visible["C"] == [0, 1, 2, 3]
    assert visible["G"] == list(range(8))
    for h, gpus, running in launcher.starts:
        assert len(gpus) == orch.rows[list(name).index(h)].nproc_per_node
        busy = [g for r in running for g in visible[name[r]]]
        assert not set(gpus) & set(busy), (name[h], gpus, [name[r] for r in running])
        assert len(busy) + len(gpus) <= 8
    started_c = next(running for h, _, running in launcher.starts if name[h] == "C")
    assert "A" not in [name[r] for r in started_c]  # C waited for A's GPUs
    started_g = next(running for h, _, running in launcher.starts if name[h] == "G")
    assert started_g == []  # the 8-GPU run had the node to itself
    assert set(store.run_status(name).values()) == {Status.succeeded}


def test_a_run_larger_than_the_node_is_refused(digits_dir: Path, tmp_path: Path) -> None:
    from ablate.errors import AblateError

    spec = study_dict(digits_dir, seeds=[0], variants=[], launch={"nproc_per_node": 4})
    study = load_study(write_study(tmp_path / "s.yaml", spec))
    orch = Orchestrator(study, Store(f"sqlite:///{tmp_path / 'p.db'}"), tmp_path / "runs",
                        gpus=[0, 1], launcher=RecordingLauncher({}))
    with pytest.raises(AblateError, match="nproc_per_node=4 needs more GPUs than --gpus"):
        orch.run()
