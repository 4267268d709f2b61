"""What planning a study costs, now that a run's id covers the code of its components.

``ablate run STUDY --dry-run`` (a CLI process: start-up, checking every run's config,
planning, fingerprinting each run's tricks, model and data format, the plan's table) on a
study of V variants x S seeds of the zoo's own tricks, with a plugin imported
(``examples/sam.py``). With ``--baseline DIR`` (a checkout of an earlier commit, e.g.
``git worktree add /tmp/base e997a10``, the last without code fingerprints) the same
command of that code runs too, interleaved with this one, each going first in turn; a
baseline that cannot import plugins plans the study without them. Wall times: the median
of the repeats, and the median of the paired ratios.

    .venv/bin/python bench/plan.py --variants 30 --seeds 30 --repeats 5 --baseline /tmp/base

Writes bench/results/plan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: Tricks without parameters that every model takes, cycled through the variants (each
#: variant one of them with a distinct until_epoch or parameter, so every run differs).
TRICKS = ("label_smoothing", "mixup", "cutmix", "random_rotation", "no_bias_decay")


def study(work: Path, variants: int, seeds: int, plugin: bool) -> Path:
    data = work / "data"
    for split in ("train", "val"):
        (data / split / "a").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(variants):
        trick = TRICKS[i % len(TRICKS)]
        items.append({"name": f"v{i}", "tricks": {trick: {}}, "set": {"optim.lr": 0.1 + i / 1000}})
    doc: dict[str, Any] = {
        "name": "plan_bench",
        "base": {"model": "resnet20", "epochs": 1, "data": {"train": str(data / "train"),
                                                             "val": str(data / "val")}},
        "seeds": list(range(seeds)), "variants": items}
    if plugin:
        shutil.copy(ROOT / "examples" / "sam.py", work / "sam.py")
        doc["imports"] = ["sam.py"]
        doc["variants"].append({"name": "sam", "tricks": {"sam": {}}})
    path = work / f"study{'_plugin' if plugin else ''}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def timed(tree: Path, study_file: Path, work: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = "from ablate.cli import app; app()"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, "run", str(study_file), "--dry-run",
                    "--db", f"sqlite:///{work / 'none.db'}"], cwd=work, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", type=int, default=30)
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--baseline", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours = study(work, args.variants, args.seeds, plugin=True)
        plain = study(work, args.variants, args.seeds, plugin=False)
        times: dict[str, list[float]] = {"now": [], "now_plugin": [], "baseline": []}
        for i in range(args.repeats):
            order = [("now", ROOT, plain), ("now_plugin", ROOT, ours),
                     ("baseline", args.baseline, plain)]
            for label, tree, file in order[i % 3:] + order[:i % 3]:  # each first in turn
                if tree is not None:
                    times[label].append(timed(tree, file, work))
    out: dict[str, Any] = {"cmd": " ".join(sys.argv), "runs": args.variants * args.seeds,
                           "runs_with_plugin": (args.variants + 1) * args.seeds,
                           "median_s": {k: statistics.median(v) for k, v in times.items() if v},
                           "all_s": times}
    if times["baseline"]:
        out["baseline"] = str(args.baseline)
        out["ratio_now_to_baseline"] = statistics.median(
            a / b for a, b in zip(times["now"], times["baseline"], strict=True))
    print(json.dumps(out, indent=2))
    dest = ROOT / "bench" / "results" / "plan.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
