"""zoo.train end to end on real images: accuracy, DDP, resume, failures, the run directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import (
    LIMIT,
    digits_config,
    read_metrics,
    read_result,
    run_train,
    stop_dropped_workers,
    write_config,
)
from zoo import rundir

COMPARED = ("epoch", "step", "train_loss", "lr", "val_loss", "top1", "top5", "eval_images")


def _same_metrics(a: Path, b: Path) -> None:
    ma, mb = read_metrics(a), read_metrics(b)
    assert [r["epoch"] for r in ma] == [r["epoch"] for r in mb]
    for ra, rb in zip(ma, mb, strict=True):
        assert {k: ra[k] for k in COMPARED} == {k: rb[k] for k in COMPARED}


def test_one_process_learns_digits(digits_dir: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", digits_config(digits_dir, epochs=5))
    out = tmp_path / "run"
    proc = run_train(["--config", str(cfg), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    result = read_result(out)
    assert result["status"] == "succeeded"
    assert result["final"]["top1"] >= 90.0, result["final"]
    assert result["epochs_completed"] == 5
    assert result["world_size"] == 1
    # ResNet-20 with 10 classes: 0.27M parameters; MACs counted at 8x8.
    assert result["params"] == sum(p.numel() for p in _resnet20().parameters())
    assert 0 < result["macs"] < 0.041e9 * (8 * 8) / (32 * 32) * 1.05
    # The run directory holds everything DESIGN.md promises.
    for name in (rundir.CONFIG, rundir.METRICS, rundir.CHECKPOINT, rundir.RESULT, rundir.LOG):
        assert (out / name).exists(), name
    config = json.loads((out / rundir.CONFIG).read_text())
    assert config["config"]["optim"]["nesterov"] is True
    assert config["env"]["world_size"] == 1 and config["env"]["torch"] == torch.__version__
    assert "commit" in config["code"] and "dirty" in config["code"]
    rows = read_metrics(out)
    assert len(rows) == 5
    assert rows[-1]["eval_images"] == 364
    assert all(r["images_per_s"] > 0 and r["seconds"] > 0 for r in rows)
    # A second start on a finished run trains nothing.
    again = run_train(["--config", str(cfg), "--out", str(out)])
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert read_metrics(out) == rows


def _resnet20() -> torch.nn.Module:
    from zoo.models import create_model

    return create_model("resnet20", num_classes=10)


def test_torchrun_two_processes_counts_every_val_image_once(
    digits_dir: Path, tmp_path: Path
) -> None:
    # 363 validation images: not divisible by the world size, so padding would show.
    data = tmp_path / "digits"
    shutil.copytree(digits_dir, data)
    first = sorted((data / "val" / "zero").glob("*.png"))[0]
    first.unlink()
    cfg = write_config(tmp_path / "c.yaml", digits_config(data, epochs=2))
    out = tmp_path / "ddp"
    proc = run_train(["--config", str(cfg), "--out", str(out)], torchrun=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_result(out)
    assert result["status"] == "succeeded" and result["world_size"] == 2
    config = json.loads((out / rundir.CONFIG).read_text())
    assert config["env"]["world_size"] == 2
    # 1,433 training images, 64 per process, 2 processes: 11 full steps per epoch.
    assert config["steps_per_epoch"] == 1433 // (64 * 2)
    assert [r["eval_images"] for r in read_metrics(out)] == [363, 363]
    # Same data, same seed, one process evaluating the same checkpoint: same top-1.
    ckpt = rundir.load_checkpoint(out / rundir.CHECKPOINT)
    top1 = _eval_single_process(ckpt["model"], data)
    assert top1 == pytest.approx(result["final"]["top1"], abs=1e-9)


def _eval_single_process(state: dict, data: Path) -> float:
    from torch.utils.data import DataLoader

    from zoo.data.datasets import build_datasets
    from zoo.data.transforms import eval_transform, train_transform
    from zoo.engine import evaluate, resolve_precision
    from zoo.validate import build_config

    cfg = build_config(digits_config(data))
    _, val, _ = build_datasets(cfg.data, train_transform(cfg.data), eval_transform(cfg.data))
    model = _resnet20()
    model.load_state_dict(state)
    out = evaluate(model, DataLoader(val, batch_size=50), torch.device("cpu"),
                   resolve_precision("fp32", torch.device("cpu")))
    assert out["count"] == len(val)
    return out["top1"]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_equals_uninterrupted_run(digits_dir: Path, tmp_path: Path, workers: int) -> None:
    cfg = write_config(tmp_path / "c.yaml", digits_config(digits_dir, epochs=3, workers=workers))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_train(["--config", str(cfg), "--out", str(straight)]).returncode == 0
    first = run_train(["--config", str(cfg), "--out", str(resumed), "--stop-after", "1"])
    assert first.returncode == 0, first.stderr
    assert not (resumed / rundir.RESULT).exists()
    assert [r["epoch"] for r in read_metrics(resumed)] == [1]
    second = run_train(["--config", str(cfg), "--out", str(resumed)])
    assert second.returncode == 0, second.stderr
    assert "resumed" in second.stderr
    _same_metrics(straight, resumed)
    a = rundir.load_checkpoint(straight / rundir.CHECKPOINT)
    b = rundir.load_checkpoint(resumed / rundir.CHECKPOINT)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert read_result(straight)["final"] == read_result(resumed)["final"]


def test_non_finite_loss_fails_the_run_with_its_reason(digits_dir: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", digits_config(
        digits_dir, epochs=2, optim={"lr": 1e12, "momentum": 0.9, "nesterov": True,
                                     "weight_decay": 0.0}, schedule={"name": "constant"}))
    out = tmp_path / "run"
    proc = run_train(["--config", str(cfg), "--out", str(out)])
    assert proc.returncode == 1
    result = read_result(out)
    assert result["status"] == "failed"
    assert result["error"].startswith("non-finite loss at epoch 1, step ")
    step = int(result["error"].rsplit(" ", 1)[1])
    assert 1 <= step <= 22


def test_run_directory_of_another_config_is_refused(digits_dir: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", digits_config(digits_dir, epochs=1))
    out = tmp_path / "run"
    assert run_train(["--config", str(cfg), "--out", str(out)]).returncode == 0
    proc = run_train(["--config", str(cfg), "--out", str(out), "--set", "seed=1"])
    assert proc.returncode == 2
    assert "holds a run of a different config" in proc.stderr


def test_same_seed_same_metrics_other_seed_differs(digits_dir: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", digits_config(digits_dir, epochs=1))
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        proc = run_train(["--config", str(cfg), "--out", str(tmp_path / name),
                          "--set", f"seed={seed}"])
        assert proc.returncode == 0, proc.stderr
    _same_metrics(tmp_path / "a", tmp_path / "b")
    assert read_metrics(tmp_path / "a")[0]["train_loss"] != read_metrics(tmp_path / "c")[0][
        "train_loss"]


class _RandomSamples(torch.utils.data.Dataset):
    """Each sample draws from torch's, Python's and NumPy's RNGs, as augmentations do."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, index: int) -> torch.Tensor:
        import random

        import numpy as np

        return torch.tensor([index, torch.rand(()).item(), random.random(), np.random.rand()])


def test_persistent_workers_draw_each_epoch_as_fresh_workers_do() -> None:
    """Exact resume with persistent workers: every epoch's samples equal those of a loader
    started for that epoch alone, the way the trainer loaded data before its workers were
    persistent (a new loader per epoch, seeded by ``epoch_generator``)."""
    from torch.utils.data import DataLoader, DistributedSampler

    from zoo.train import EpochKeys, EpochSeeded, epoch_generator, worker_base_seed

    ds = _RandomSamples()
    keys = EpochKeys(DistributedSampler(ds, num_replicas=1, rank=0, seed=3, drop_last=True))
    persistent = DataLoader(EpochSeeded(ds), batch_size=4, sampler=keys, num_workers=2,
                            drop_last=True, generator=torch.Generator(),
                            persistent_workers=True)
    for epoch in (1, 2, 3):
        gen = epoch_generator(3, 0, epoch)
        keys.set_epoch(epoch, worker_base_seed(gen))
        got = torch.cat(list(persistent))
        after = torch.rand(2, generator=gen)  # what the batch tricks draw next

        ref_gen = epoch_generator(3, 0, epoch)
        sampler = DistributedSampler(ds, num_replicas=1, rank=0, seed=3, drop_last=True)
        sampler.set_epoch(epoch)
        fresh = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=2, drop_last=True,
                           generator=ref_gen)
        assert torch.equal(got, torch.cat(list(fresh))), epoch
        assert torch.equal(after, torch.rand(2, generator=ref_gen)), epoch
        assert sorted(got[:, 0].long().tolist()) == list(range(24))
    del persistent, fresh
    stop_dropped_workers()


def test_channels_last_resolution() -> None:
    from zoo.train import resolve_channels_last

    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # only the device type is read
    dense = _resnet20()
    grouped = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=2))
    for device in (cpu, cuda):  # explicit values are honoured everywhere
        assert resolve_channels_last(True, "mobilenetv2", grouped, device) is True
        assert resolve_channels_last(False, "resnet20", dense, device) is False
    assert resolve_channels_last(None, "resnet20", dense, cpu) is False
    assert resolve_channels_last(None, "resnet20", dense, cuda) is True
    assert resolve_channels_last(None, "resnext50_32x4d", dense, cuda) is False  # registry
    assert resolve_channels_last(None, "timm/any", dense, cuda) is True  # by its convs
    assert resolve_channels_last(None, "timm/any", grouped, cuda) is False


def test_compiled_run_checkpoints_the_plain_module_and_resumes(
    digits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compile: true trains through torch.compile and saves the uncompiled module's weights;
    stopped and resumed it ends where an uninterrupted compiled run ends. Compiled with the
    aot_eager backend (TorchDynamo + AOTAutograd, no code generation): Inductor's C++
    compile of ResNet-20 takes about a minute on these CPUs."""
    import functools

    from zoo.train import run
    from zoo.validate import build_config

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    cfg = build_config(digits_config(digits_dir, epochs=2, compile=True, log_every=50))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run(cfg, straight) == 0
    assert run(cfg, resumed, stop_after=1) == 0
    assert not (resumed / rundir.RESULT).exists()
    assert run(cfg, resumed) == 0
    assert read_result(straight)["status"] == "succeeded"
    _same_metrics(straight, resumed)
    config = json.loads((straight / rundir.CONFIG).read_text())
    assert config["config"]["compile"] is True and config["channels_last"] is False
    state = rundir.load_checkpoint(resumed / rundir.CHECKPOINT)["model"]
    assert not [k for k in state if "_orig_mod" in k]
    plain = _resnet20()
    plain.load_state_dict(state)  # strict: the plain module's keys, nothing else
    b = rundir.load_checkpoint(straight / rundir.CHECKPOINT)["model"]
    for key, value in state.items():
        assert torch.equal(value, b[key]), key


@pytest.mark.slow
def test_gpu_bench_runs_in_smoke_mode(tmp_path: Path) -> None:
    """bench/gpu.sh is prepared here for a session with a GPU: its CPU smoke mode runs
    every part (synthetic bare/zoo loops, the real loader, zoo.train) end to end."""
    import subprocess

    from tests.conftest import ROOT

    out = tmp_path / "gpu.json"
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--smoke", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=LIMIT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["smoke"] is True and not result["warnings"]
    rows = result["synthetic"]
    assert {(r["loop"], r["channels_last"]) for r in rows} == {
        (loop, cl) for loop in ("bare", "zoo") for cl in (False, True)}
    assert all(r["images_per_s"] > 0 for r in rows)
    real = result["real"]
    assert real["loader_images_per_s"] > 0 and real["bare_images_per_s"] > 0
    (run,) = real["zoo_train"]
    assert run["images_per_s"] > 0 and run["resolved_channels_last"] is False


# --------------------------------------------------------------------------- robustness


def _in_process(digits_dir: Path, out: Path, stop_after: int | None = None,
                **overrides: object) -> int:
    from zoo.train import run
    from zoo.validate import build_config

    cfg = build_config(digits_config(digits_dir, **{"epochs": 3, **overrides}))
    return run(cfg, out, stop_after=stop_after)


def test_a_damaged_checkpoint_resumes_from_the_previous_one(digits_dir: Path,
                                                             tmp_path: Path) -> None:
    straight, damaged = tmp_path / "straight", tmp_path / "damaged"
    assert _in_process(digits_dir, straight) == 0
    assert _in_process(digits_dir, damaged, stop_after=2) == 0
    assert rundir.load_checkpoint(damaged / rundir.PREVIOUS_CHECKPOINT)["epoch"] == 1
    ckpt = damaged / rundir.CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # a truncated copy
    assert _in_process(digits_dir, damaged) == 0
    log = (damaged / rundir.LOG).read_text()
    assert f"{ckpt}: unreadable checkpoint" in log and "resumed" in log
    assert [r["epoch"] for r in read_metrics(damaged)] == [1, 2, 3]  # epoch 2 once
    _same_metrics(straight, damaged)
    assert read_result(damaged)["final"] == read_result(straight)["final"]


def test_no_readable_checkpoint_is_one_line_naming_the_files_and_the_fix(
    digits_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", digits_config(digits_dir, epochs=2))
    assert run_train(["--config", str(cfg), "--out", str(out), "--stop-after", "1"]
                     ).returncode == 0
    (out / rundir.CHECKPOINT).write_bytes(b"PK\x03\x04 not a checkpoint")
    proc = run_train(["--config", str(cfg), "--out", str(out)])
    assert proc.returncode == 2
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert str(out / rundir.CHECKPOINT) in line and "no readable checkpoint" in line
    assert f"delete {rundir.CHECKPOINT} and {rundir.PREVIOUS_CHECKPOINT}" in line
    # Recorded too, as a failure every start repeats: an orchestrator does not retry it.
    result = read_result(out)
    assert (result["status"], result["retryable"]) == ("failed", False)
    assert "no readable checkpoint" in result["error"]


def test_a_run_restarted_without_its_checkpoint_writes_each_epoch_once(
    digits_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert _in_process(digits_dir, out, stop_after=1, epochs=2) == 0
    (out / rundir.CHECKPOINT).unlink()
    assert _in_process(digits_dir, out, epochs=2) == 0
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]
    assert read_result(out)["status"] == "succeeded"


def test_a_full_disk_while_checkpointing_fails_the_run_naming_the_file(
    digits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "run"
    assert _in_process(digits_dir, out, epochs=1) == 1
    result = read_result(out)
    assert result["status"] == "failed"
    assert result["error"].startswith(f"no space left on device: {out / rundir.CHECKPOINT}")
    assert not list(out.glob(".*.tmp")) and not (out / rundir.CHECKPOINT).exists()


def test_config_json_records_what_decides_bitwise_equality_and_resolved_settings(
    digits_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert _in_process(digits_dir, out, epochs=1, batch_size=32,
                       tricks={"linear_lr_scaling": {}}) == 0
    config = json.loads((out / rundir.CONFIG).read_text())
    det = config["env"]["determinism"]
    assert det["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert det["torch_threads"] == torch.get_num_threads()
    assert det["blas_info"] and det["onednn"].startswith(("Intel(R) MKL-DNN", "oneDNN"))
    assert isinstance(det["mkldnn_enabled"], bool)
    # lr 0.1 for 256 images, run with 32: the optimizer started at 0.1 * 32 / 256.
    assert config["config"]["optim"]["lr"] == 0.1
    assert config["resolved"] == {"lr": {"value": 0.0125, "trick": "linear_lr_scaling"}}
    (audit,) = read_result(out)["audit"]
    assert audit["effective"] and audit["details"]["lr"] == 0.0125


def test_train_py_functions_are_short() -> None:
    import ast

    from tests.conftest import ROOT

    tree = ast.parse((ROOT / "zoo" / "train.py").read_text())
    lengths = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree)
               if isinstance(n, ast.FunctionDef)}
    assert max(lengths.values()) < 60, max(lengths.items(), key=lambda kv: kv[1])


def test_a_checkout_is_dirty_when_code_differs_not_a_results_database(tmp_path: Path) -> None:
    """The dirty flag a run records: a changed tracked file makes it dirty, a changed
    results database (what `make results` writes while the demo trains) does not."""
    import subprocess

    from zoo.rundir import code_info

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "trick.py").write_text("x = 1\n")
    (tmp_path / "results.db").write_bytes(b"v1")
    git("add", "-A")
    git("commit", "-qm", "one")
    assert code_info(tmp_path)["dirty"] is False
    (tmp_path / "results.db").write_bytes(b"v2")
    assert code_info(tmp_path)["dirty"] is False
    (tmp_path / "trick.py").write_text("x = 2\n")
    info = code_info(tmp_path)
    assert info["dirty"] is True and len(info["commit"]) == 40
