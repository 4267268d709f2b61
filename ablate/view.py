"""What the orchestrator shows a person: the live view while a study trains, the plan of a
dry run, status tables. Plain dicts in, rich renderables out."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ablate.console import console
from ablate.orchestrate import Event, Orchestrator
from ablate.store import utcnow

STATUS_STYLE = {"succeeded": "green", "failed": "red", "running": "cyan",
                "interrupted": "yellow", "lost": "magenta", "queued": "dim"}


def _fmt_seconds(s: float | None) -> str:
    if s is None or s != s:
        return "—"
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _elapsed(run: dict[str, Any]) -> float | None:
    start: datetime | None = run.get("started_at")
    if start is None:
        return None
    end = run.get("finished_at") if run["status"] != "running" else None
    return ((end or utcnow()) - start).total_seconds()


def eta_seconds(run: dict[str, Any]) -> float | None:
    """Remaining time of a running run from its pace so far (None until one epoch is done)."""
    if run["status"] != "running" or not run.get("epochs_done"):
        return None
    elapsed = _elapsed(run)
    if elapsed is None:
        return None
    return elapsed / run["epochs_done"] * (run["epochs"] - run["epochs_done"])


def status_table(study: str, runs: list[dict[str, Any]]) -> Table:
    done = sum(1 for r in runs if r["status"] == "succeeded")
    table = Table(title=f"{study}: {done}/{len(runs)} runs succeeded", title_justify="left")
    for col, just in (("variant", "left"), ("seed", "right"), ("run", "left"),
                      ("status", "left"), ("epoch", "right"), ("top-1", "right"),
                      ("img/s", "right"), ("elapsed", "right"), ("ETA", "right")):
        table.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for r in runs:
        style = STATUS_STYLE.get(r["status"], "")
        table.add_row(
            r["variant"], str(r["seed"]), r["hash"][:8], f"[{style}]{r['status']}[/]",
            f"{r['epochs_done']}/{r['epochs']}",
            "—" if r["top1"] is None else f"{r['top1']:.2f}",
            "—" if r["images_per_s"] is None else f"{r['images_per_s']:.0f}",
            _fmt_seconds(_elapsed(r)), _fmt_seconds(eta_seconds(r)),
        )
    errors = [r for r in runs if r["status"] == "failed" and r.get("error")]
    if errors:
        table.caption = "\n".join(f"{r['hash'][:8]} {r['variant']} seed {r['seed']}: "
                                  f"{r['error']}" for r in errors)
        table.caption_justify = "left"
    return table


def plan_table(study: str, rows: list[dict[str, Any]], statuses: dict[str, str]) -> Table:
    table = Table(title=f"{study}: plan of {len(rows)} runs", title_justify="left")
    for col in ("variant", "change", "seed", "run", "state"):
        table.add_column(col, no_wrap=col != "change")
    label = {"succeeded": "done", "running": "running", "failed": "failed (--retry-failed)",
             "interrupted": "to resume", "lost": "to resume", "queued": "to do"}
    for r in rows:
        st = statuses.get(r["hash"])
        table.add_row(r["variant"], r["change"], str(r["seed"]), r["hash"][:8],
                      label.get(st or "queued", st or "to do"))
    return table


class LiveView:
    """One line per active run and the study's progress with ETA; in a pipe, plain lines."""

    def __init__(self, total_runs: int, already_done: int) -> None:
        self.tty = sys.stdout.isatty()
        self.total, self.done = total_runs, already_done
        self.progress = Progress(TextColumn("study"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=console)
        self.task = self.progress.add_task("study", total=total_runs, completed=already_done)
        self.live: Live | None = None
        self.orch: Orchestrator | None = None
        self.t0 = time.monotonic()

    def __enter__(self) -> LiveView:
        if self.tty:
            self.live = Live(self._render(), console=console, refresh_per_second=2,
                             get_renderable=self._render)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def _render(self) -> Group:
        table = Table(box=None, pad_edge=False)
        for col in ("variant", "seed", "epoch", "top-1", "img/s", "elapsed"):
            table.add_column(col, no_wrap=True)
        if self.orch is not None:
            for job in self.orch.active.values():
                run = job.run
                metrics = self.orch.store.metrics(job.hash)[-1:] or [{}]
                last = metrics[0]
                table.add_row(
                    run["variant"], str(run["seed"]),
                    f"{self.orch.epochs_seen.get(job.hash, 0)}/{run['epochs']}",
                    f"{last['top1']:.2f}" if "top1" in last else "—",
                    f"{last['images_per_s']:.0f}" if "images_per_s" in last else "—",
                    _fmt_seconds(time.monotonic() - job.started),
                )
        return Group(table, self.progress)

    def __call__(self, event: Event, orch: Orchestrator) -> None:
        self.orch = orch
        run = event.run
        name = f"{run['variant']} seed {run['seed']} ({run['hash'][:8]})"
        if event.kind in ("done", "failed"):
            self.done += 1
            self.progress.update(self.task, completed=self.done)
        line = {
            "start": f"start   {name}",
            "epoch": f"epoch   {name}: {event.detail}/{run['epochs']}",
            "done": f"done    {name}",
            "failed": f"[red]failed[/]  {name}: {event.detail}",
            "interrupted": f"[yellow]stopped[/] {name} (resumes on the next run)",
        }[event.kind]
        if event.kind == "epoch" and self.tty:
            return  # the live table shows epochs
        console.print(line)
