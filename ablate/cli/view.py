"""What the orchestrator shows a person: the live view while a study trains (driven by
the orchestrator's events only), the plan of a dry run, status tables as plain text."""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Group
from rich.markup import escape
from rich.progress import ProgressColumn
from rich.table import Table
from rich.text import Text

from ablate.cli.console import console
from ablate.store.schema import utcnow

if TYPE_CHECKING:
    from rich.live import Live
    from rich.progress import Task

    from ablate.launch.orchestrator import Event
    from ablate.store.db import RunState
    from ablate.study.spec import RunSpec
    from zoo.contract import MetricsRow

STATUS_STYLE = {"succeeded": "green", "failed": "red", "running": "cyan",
                "interrupted": "yellow", "lost": "magenta", "queued": "dim",
                "cancelled": "yellow"}


def _fmt_seconds(s: float | None) -> str:
    if s is None or s != s:
        return "—"
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _elapsed(run: RunState, now: datetime | None = None) -> float | None:
    if run.started_at is None:
        return None
    end = run.finished_at if run.status != "running" else None
    return ((end or now or utcnow()) - run.started_at).total_seconds()


def eta_seconds(run: RunState, now: datetime | None = None) -> float | None:
    """Remaining time of a running run from its pace so far (None until one epoch is done)."""
    if run.status != "running" or not run.epochs_done:
        return None
    elapsed = _elapsed(run, now)
    if elapsed is None:
        return None
    return elapsed / run.epochs_done * (run.epochs - run.epochs_done)


def schedule_eta(active_left: Iterable[float], queued: Iterable[float], parallel: int
                 ) -> float:
    """Seconds until the last run ends when ``parallel`` slots run the active runs (their
    remaining seconds) and each queued run (its expected seconds, in plan order) takes the
    first slot that frees, as the orchestrator does (list scheduling)."""
    slots = sorted(max(0.0, t) for t in active_left)
    slots += [0.0] * max(0, parallel - len(slots))
    heapq.heapify(slots)
    for seconds in queued:
        heapq.heappush(slots, heapq.heappop(slots) + seconds)
    return max(slots, default=0.0)


#: Statuses whose runs the next ``ablate run`` trains (failed ones only with --retry-failed).
_TO_TRAIN = ("queued", "interrupted", "lost", "cancelled")


def study_eta(runs: Sequence[RunState], now: datetime | None = None) -> float | None:
    """Seconds until a study's last run ends: each run left costs its epochs left times the
    measured seconds per epoch (its own pace while it runs; else its variant's, else the
    study's mean pace), scheduled over as many slots as runs are running now. None when
    nothing runs (no orchestrator is at work) or no epoch has been timed yet."""
    now = now or utcnow()
    running = [r for r in runs if r.status == "running"]
    if not running:
        return None
    pace: dict[str, float] = {}
    for r in runs:
        elapsed = _elapsed(r, now)
        done = r.epochs if r.status == "succeeded" else r.epochs_done
        if elapsed is not None and done and r.status in ("succeeded", "running"):
            pace[r.hash] = elapsed / done
    if not pace:
        return None
    by_variant: dict[int, list[float]] = {}
    for r in runs:
        if r.hash in pace:
            by_variant.setdefault(r.variant_index, []).append(pace[r.hash])
    study_pace = sum(pace.values()) / len(pace)

    def per_epoch(r: RunState) -> float:
        if r.hash in pace:
            return pace[r.hash]
        seen = by_variant.get(r.variant_index)
        return sum(seen) / len(seen) if seen else study_pace

    left = []
    for r in running:
        if r.epochs_done:
            left.append(per_epoch(r) * (r.epochs - r.epochs_done))
        else:  # no epoch yet: a whole run's time less what it has already spent
            left.append(per_epoch(r) * r.epochs - (_elapsed(r, now) or 0.0))
    queued = [per_epoch(r) * (r.epochs - r.epochs_done) for r in runs
              if r.status in _TO_TRAIN]
    return schedule_eta(left, queued, len(running))


def text_table(header: Sequence[str], rows: Iterable[Sequence[str]],
               right: Iterable[str] = ()) -> str:
    """Rows of cells as plain aligned text under a header and a rule: what ``status``
    prints, 10,000 rows in milliseconds (rich measures every cell: 1.3 ms a row)."""
    table = [list(r) for r in rows]
    widths = [max([cell_len(h), *(cell_len(r[i]) for r in table)])
              for i, h in enumerate(header)]
    on_right = set(right)
    just = [h in on_right for h in header]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(_pad(c, w, j) for c, w, j in zip(cells, widths, just, strict=True)
                         ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, table)])


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - cell_len(text))
    return fill + text if right else text + fill


def _top1(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _errors(runs: Sequence[RunState]) -> list[str]:
    return [f"{r.hash[:8]} {r.variant} seed {r.seed}: {r.error}"
            for r in runs if r.status == "failed" and r.error]


def status_summary(study: str, runs: Sequence[RunState], now: datetime | None = None) -> str:
    """A study per variant: its runs by status, the mean top-1 of those done, and the time
    until its last running run ends (ETA from each run's pace so far)."""
    now = now or utcnow()
    by_variant: dict[int, list[RunState]] = {}
    for r in runs:
        by_variant.setdefault(r.variant_index, []).append(r)
    rows = []
    for group in by_variant.values():
        counts = {s: sum(1 for r in group if r.status == s)
                  for s in ("succeeded", "running", "failed")}
        done = [r.top1 for r in group if r.status == "succeeded" and r.top1 is not None]
        etas = [e for r in group if (e := eta_seconds(r, now)) is not None]
        rows.append([group[0].variant, str(len(group)), str(counts["succeeded"]),
                     str(counts["running"]), str(counts["failed"]),
                     str(len(group) - sum(counts.values())),
                     _top1(sum(done) / len(done) if done else None),
                     _fmt_seconds(max(etas) if etas else None)])
    header = ("variant", "runs", "done", "running", "failed", "other", "top-1", "ETA")
    n_done = sum(1 for r in runs if r.status == "succeeded")
    eta = study_eta(runs, now)
    running = sum(1 for r in runs if r.status == "running")
    left = sum(1 for r in runs if r.status in (*_TO_TRAIN, "running"))
    when = (f", study ETA {_fmt_seconds(eta)} ({left} runs left, {running} in parallel)"
            if eta is not None else "")
    return "\n".join([f"{study}: {n_done}/{len(runs)} runs succeeded{when}",
                      text_table(header, rows, right=header[1:]), *_errors(runs)])


def runs_table(study: str, runs: Sequence[RunState], now: datetime | None = None) -> str:
    """Every run of a study: status, epoch, top-1, speed, elapsed time and ETA."""
    now = now or utcnow()
    header = ("variant", "seed", "run", "status", "epoch", "top-1", "img/s", "elapsed", "ETA")
    rows = ([r.variant, str(r.seed), r.hash[:8], r.status, f"{r.epochs_done}/{r.epochs}",
             _top1(r.top1), "—" if r.images_per_s is None else f"{r.images_per_s:.0f}",
             _fmt_seconds(_elapsed(r, now)), _fmt_seconds(eta_seconds(r, now))]
            for r in runs)
    n_done = sum(1 for r in runs if r.status == "succeeded")
    return "\n".join([f"{study}: {n_done}/{len(runs)} runs succeeded",
                      text_table(header, rows, right=("seed", "epoch", "top-1", "img/s",
                                                      "elapsed", "ETA")),
                      *_errors(runs)])


def jobs_table(study: str, runs: Sequence[RunState]) -> str:
    """The scheduler's side of a study's runs: job id and submitit's last known state."""
    header = ("variant", "seed", "run", "status", "job", "job state")
    rows = ([r.variant, str(r.seed), r.hash[:8], r.status, str(r.job_id), r.job_state or "—"]
            for r in runs if r.job_id)
    return f"{study}: scheduler jobs\n" + text_table(header, rows, right=("seed",))


def plan_table(study: str, rows: Sequence[RunSpec], statuses: dict[str, str],
               stage_two: Sequence[str] = ()) -> str:
    """A dry run's plan: each (variant, seed) with its run and what the next run does;
    ``stage_two``: planned seeds' lines, one per variant, under the table."""
    label = {"succeeded": "done", "running": "running", "failed": "failed (--retry-failed)",
             "interrupted": "to resume", "lost": "to resume", "cancelled": "to resume",
             "queued": "to do"}
    header = ("variant", "change", "seed", "epochs", "run", "state")
    cells = ([r.variant, r.change, str(r.seed), str(r.epochs), r.hash[:8],
              label.get(statuses.get(r.hash) or "queued", statuses.get(r.hash) or "to do")]
             for r in rows)
    table = f"{study}: plan of {len(rows)} runs\n" + text_table(header, cells,
                                                                 right=("seed", "epochs"))
    return "\n".join([table, *stage_two])


class _StudyETA(ProgressColumn):
    """The study's time left as :meth:`LiveView.eta` computes it (rich's own column
    extrapolates runs completed per second, which jumps as runs finish in bursts)."""

    def __init__(self, view: LiveView) -> None:
        super().__init__()
        self.view = view

    def render(self, task: Task) -> Text:
        eta = self.view.eta()
        return Text(f"ETA {_fmt_seconds(eta) if eta is not None else '-:--:--'}",
                    style="progress.remaining")


class LiveView:
    """One line per active run and the study's progress with ETA; in a pipe, plain lines.

    It knows only what the orchestrator's events told it (start, epoch with its metrics,
    done, failed, interrupted): rich's refresh thread renders that state and never reads
    the orchestrator or the database. ``plan``: the runs still to train, in order (their
    epochs; without it, queued runs are taken to have the mean epochs of those seen);
    ``parallel``: the orchestrator's ``--max-parallel`` (without it, the most runs seen
    at once); ``clock``: seconds, monotonic (a test's fake clock)."""

    def __init__(self, total_runs: int, already_done: int,
                 plan: Sequence[RunSpec] | None = None, parallel: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.tty = sys.stdout.isatty()
        self.total, self.done = total_runs, already_done
        self.clock = clock
        self.plan = {r.hash: r.epochs for r in plan or ()}
        self.parallel, self.most_active = parallel, 0
        #: Seconds per epoch of each run that has timed at least one epoch here.
        self.pace: dict[str, float] = {}
        self.last_epoch: dict[str, float] = {}
        self.finished: set[str] = set()
        self.progress = Progress(TextColumn("study"), BarColumn(), MofNCompleteColumn(),
                                 _StudyETA(self), console=console)
        self.task = self.progress.add_task("study", total=total_runs, completed=already_done)
        self.live: Live | None = None
        #: The active runs by hash: their spec, start time, epochs done and last metrics.
        self.active: dict[str, tuple[RunSpec, float, int, MetricsRow | None]] = {}

    def eta(self) -> float | None:
        """Seconds until the study's last run ends: every run left costs its epochs left
        times the measured seconds per epoch (its own pace once it has one, else the mean
        pace of the runs timed so far), scheduled over the parallel slots. None until an
        epoch has been timed."""
        if not self.pace:
            return None
        now = self.clock()
        active = list(self.active.values())
        mean = sum(self.pace.values()) / len(self.pace)
        left = []
        for run, started, epochs, _ in active:
            if run.hash in self.pace and epochs:  # its pace, less the time since its epoch
                left.append(self.pace[run.hash] * (run.epochs - epochs)
                            - (now - self.last_epoch[run.hash]))
            else:
                left.append(mean * run.epochs - (now - started))
        seen = {h for h in self.active} | self.finished
        planned = [e for h, e in self.plan.items() if h not in seen]
        n_queued = max(0, self.total - self.done - len(active))
        if len(planned) < n_queued:  # no plan given: the runs seen tell the typical length
            typical = [run.epochs for run, *_ in active] or list(self.plan.values()) or [1]
            planned += [sum(typical) / len(typical)] * (n_queued - len(planned))
        slots = self.parallel or max(self.most_active, 1)
        return schedule_eta(left, [mean * e for e in planned[:n_queued]], slots)

    def __enter__(self) -> LiveView:
        if self.tty:
            from rich.live import Live

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
        for run, started, epochs, last in list(self.active.values()):
            table.add_row(
                escape(run.variant), str(run.seed), f"{epochs}/{run.epochs}",
                "—" if last is None else f"{last.top1:.2f}",
                "—" if last is None else f"{last.images_per_s:.0f}",
                _fmt_seconds(self.clock() - started),
            )
        return Group(table, self.progress)

    def __call__(self, event: Event, _source: Any = None) -> None:
        run = event.run
        if event.kind == "planned":  # planned seeds: the pilot fixed another run to train
            self.total += 1
            self.plan[run.hash] = run.epochs
            self.progress.update(self.task, total=self.total)
        elif event.kind == "start":
            self.active[run.hash] = (run, self.clock(), 0, None)
            self.most_active = max(self.most_active, len(self.active))
        elif event.kind == "epoch" and run.hash in self.active:
            spec, started, _, _ = self.active[run.hash]
            epochs = int(event.detail)
            self.active[run.hash] = (spec, started, epochs, event.metrics)
            if epochs:
                self.last_epoch[run.hash] = self.clock()
                self.pace[run.hash] = (self.last_epoch[run.hash] - started) / epochs
        elif event.kind in ("done", "failed", "interrupted", "cancelled"):
            self.active.pop(run.hash, None)
            if event.kind not in ("interrupted", "cancelled"):
                self.finished.add(run.hash)
        name = f"{escape(run.variant)} seed {run.seed} ({run.hash[:8]})"
        if event.kind in ("done", "failed"):
            self.done += 1
            self.progress.update(self.task, completed=self.done)
        line = {
            "planned": f"planned {name}: {escape(event.detail)}",
            "start": f"start   {name}" + (f": {escape(event.detail)}" if event.detail else ""),
            "epoch": f"epoch   {name}: {event.detail}/{run.epochs}",
            "done": f"done    {name}",
            "failed": f"[red]failed[/]  {name}: {escape(event.detail)}",
            "interrupted": f"[yellow]stopped[/] {name} (resumes on the next run)",
            "cancelled": f"[yellow]cancelled[/] {name}: {escape(event.detail)}",
        }[event.kind]
        if event.kind == "epoch" and self.tty:
            return  # the live table shows epochs
        console.print(line)
