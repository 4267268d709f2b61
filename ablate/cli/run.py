"""``ablate run``, ``ablate status`` and ``ablate show``: thin commands over the orchestrator
and the results database; domain errors become one line and exit code 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from ablate.cli.console import console, fail
from ablate.cli.options import DbOption
from ablate.errors import USER_ERRORS
from ablate.startup import frozen_imports

if TYPE_CHECKING:
    from ablate.launch.orchestrator import Event as RunEvent
    from ablate.launch.orchestrator import Outcome


#: Seconds between a browser's reloads of the ``--html`` page while a study trains.
HTML_REFRESH_S = 30

# The options of ``ablate run``, named here so that the command reads as what it does.
RunsDirOption = Annotated[Path, typer.Option(help="where run directories are written")]
MaxParallelOption = Annotated[int | None, typer.Option(
    min=1, help="runs trained at once (default: 1 on CPU, as many as --gpus hold, every "
                "run at once with backend: slurm)")]
GpusOption = Annotated[str | None, typer.Option(
    help="GPUs to use, e.g. 0-7 or 0,2 (default: all visible; 'none' for CPU)")]
RetryFailedOption = Annotated[bool, typer.Option(
    help="train runs that failed in an earlier 'ablate run' again")]
MaxAttemptsOption = Annotated[int, typer.Option(
    min=1, help="attempts at a run before it stays failed (a failed attempt is tried "
                "again at once; --retry-failed gives failed runs as many again)")]
LostAfterOption = Annotated[float, typer.Option(
    min=5, help="seconds without a heartbeat before a running run counts as lost")]
CpuThreadsOption = Annotated[int | None, typer.Option(
    min=1, envvar="ABLATE_CPU_THREADS", show_envvar=False,
    help="CPU threads per training process (default: the cores split evenly "
         "between parallel runs); also read from ABLATE_CPU_THREADS")]
NodeRankOption = Annotated[int, typer.Option(
    min=0, envvar="ABLATE_NODE_RANK",
    help="multi-node runs (launch.nnodes > 1, backend: local): 0 on the node that "
         "claims and records runs, 1..nnodes-1 on each other node, whose torchrun agents "
         "join node 0's runs in plan order")]
HtmlOption = Annotated[Path | None, typer.Option(
    "--html", metavar="FILE", show_default=False,
    help="keep the study's self-contained report page at FILE, rewritten after each "
         "finished run; a browser showing it reloads it every "
         f"{HTML_REFRESH_S} s while the study trains")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", show_default=False,
    help="change the study file's document before it is checked, e.g. --set "
         "base.epochs=1 --set 'seeds=[0]' (KEY dotted from the top, VALUE read as YAML; "
         "repeatable). The runs' configs and hashes change with it. Without --set "
         "name=NEW, the study is recorded as NAME-set-<8 hex of the overrides>, never "
         "under the file's own name. Every node of a multi-node run needs the same "
         "--set")]


def run(
    study_file: Annotated[Path, typer.Argument(help="study definition (YAML)")],
    db: DbOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    max_parallel: MaxParallelOption = None,
    gpus: GpusOption = None,
    retry_failed: RetryFailedOption = False,
    max_attempts: MaxAttemptsOption = 3,
    dry_run: Annotated[bool, typer.Option(help="print the plan and exit")] = False,
    lost_after: LostAfterOption = 60.0,
    cpu_threads: CpuThreadsOption = None,
    node_rank: NodeRankOption = 0,
    html: HtmlOption = None,
    overrides: SetOption = None,
) -> None:
    """Train every variant of a study on every seed, each run once.

    Plans STUDY_FILE, skips each run done in any study, trains the rest as torchrun jobs;
    Ctrl-C stops them, the same command resumes them. Exit code 0: all done; 1: runs
    failed; 2: bad input; 3: runs cancelled; 130: stopped."""
    from ablate.launch.orchestrator import Orchestrator
    from ablate.store.db import Store
    from ablate.store.schema import default_url
    from ablate.study.spec import load_study

    try:
        _check_study_file(study_file)
        study = load_study(study_file, overrides=overrides or ())
        if study.file_name is not None:
            console.print(f"--set without name=: recorded as study '{escape(study.name)}', "
                          f"not '{escape(study.file_name)}'", soft_wrap=True)
        rows = study.run_specs(runs_dir)  # the plan, made once
        url = db or default_url()
        if dry_run:
            typer.echo(_plan(study, rows, runs_dir, url))
            return
        store = Store(url)
        if study.planned is not None:  # stage 2 as far as the pilot in the database fixes it
            rows = study.planned_specs(runs_dir, store.succeeded_top1)
        if node_rank > 0:
            _follow(study, store, runs_dir, node_rank, gpus, cpu_threads, retry_failed)
            return
        orch = Orchestrator(study, store, runs_dir, max_parallel=max_parallel,
                            gpus=_gpus(gpus), retry_failed=retry_failed, lost_after=lost_after,
                            cpu_threads=cpu_threads, specs=rows, max_attempts=max_attempts)
    except USER_ERRORS as exc:
        fail(str(exc))
    from ablate.cli.view import LiveView

    status = {h: str(s) for h, s in store.run_status(r.hash for r in rows).items()}
    done = sum(1 for s in status.values() if s == "succeeded")
    left = list({r.hash: r for r in rows if status.get(r.hash) != "succeeded"}.values())
    with LiveView(len({r.hash for r in rows}), done, plan=left,
                  parallel=max_parallel) as view:
        orch.on_event = view if html is None else _with_page(view, store, study.name, html)
        outcome = _until_done(orch.run, "stopped; run the same command to resume")
    if html is not None:
        _write_page(store, study.name, html, refresh_s=None)  # final: no more reloads
    store.close()
    _say_outcome(study, study_file, outcome, store.url)


def _plan(study: Any, rows: Any, runs_dir: Path, url: str) -> str:
    """The dry run's table: each run of the plan, done or to do (a plan reads the database,
    if there is one; it never creates or alters it)."""
    from ablate.cli.view import plan_table
    from ablate.store.db import Store

    statuses: dict[str, str] = {}
    plans: dict[str, Any] = {v.name: None for v in study.variants}
    if not url.startswith("sqlite:///") or Path(url[len("sqlite:///"):]).exists():
        store = Store(url, create=False)
        if study.planned is not None:
            plans = study.stein_plans(runs_dir, store.succeeded_top1)
            rows = study.planned_specs(runs_dir, store.succeeded_top1)
        statuses = {h: str(s) for h, s in store.run_status(r.hash for r in rows).items()}
        store.close()
    lines = _stage_two_lines(study, plans) if study.planned is not None else []
    return plan_table(study.name, rows, statuses, lines)


#: ``ablate run``'s exit code when a person cancelled runs' jobs (scancel) and nothing
#: failed: the study is not complete, and the same command resumes them (1: runs failed;
#: 2: bad input; 130: stopped by a signal).
EXIT_CANCELLED = 3


def _say_outcome(study: Any, study_file: Path, outcome: Any, url: str) -> None:
    """The closing line of ``ablate run``, and the failed runs left; exit 1 if any, else
    :data:`EXIT_CANCELLED` if runs were cancelled: a script's ``ablate run && ablate
    report`` must not report a study that is not complete."""
    console.print(
        f"{escape(study.name)}: {outcome.succeeded} trained, {outcome.reused} reused, "
        f"{outcome.failed} failed"
        + (f", {outcome.elsewhere} running elsewhere" if outcome.elsewhere else "")
        + (f", {outcome.cancelled} cancelled (the next run resumes them)"
           if outcome.cancelled else "")
        + f"; results in {escape(url)}"
    )
    if outcome.failed_left:
        # Said every time, not only when they failed this time: a rerun that trains
        # nothing must not read as a study that is done.
        n = outcome.failed_left
        console.print(f"[red]{n} run{'s' if n > 1 else ''} failed[/] (see 'ablate status "
                      f"{escape(study.name)} --runs'); fix the cause, then train "
                      f"{'them' if n > 1 else 'it'} again with: ablate run "
                      f"{escape(_command_args(study_file, study.overrides))} --retry-failed",
                      soft_wrap=True)
    if outcome.failed or outcome.failed_left:
        raise typer.Exit(1)
    if outcome.cancelled:
        raise typer.Exit(EXIT_CANCELLED)


def _stage_two_lines(study: Any, plans: dict[str, Any]) -> list[str]:
    """A dry run's words on planned seeds: each variant's stage 2, or that it waits for
    the pilot."""
    p = study.planned
    lines = [f"planned seeds: pilot {list(p.pilot)}, then per variant the seeds for a "
             f"{100 * (1 - p.alpha):g}% interval of half-width <= {p.target_halfwidth:g} "
             f"top-1 points (Stein's two-stage procedure), at most {p.max} seeds"]
    for name, plan in plans.items():
        if plan is None:
            lines.append(f"  {name}: stage 2: planned after the pilot")
            continue
        seeds = p.extra_seeds(plan.extra)
        which = (f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else
                 f"seed {seeds[0]}" if seeds else "none needed")
        lines.append(f"  {name}: stage 2: {plan.extra} more ({which}); n = {plan.n}, pilot "
                     f"sd of the differences {plan.s0:.3g}, planned half-width "
                     f"{plan.planned_half_width:.3g}"
                     + (f" (capped by max {p.max}: the target is not guaranteed)"
                        if plan.capped else ""))
    return lines


def _write_page(store: Any, study: str, path: Path, refresh_s: int | None) -> None:
    """Rewrite the ``--html`` page; a failure is a warning: the study trains on."""
    from ablate.report.html import write_pages

    try:
        write_pages(store, path, [study], refresh_s=refresh_s)
    except (*USER_ERRORS, OSError) as exc:
        console.print(f"[yellow]warning: --html {escape(str(path))}: {escape(str(exc))}[/]",
                      markup=True)


def _with_page(view: Callable[[RunEvent, Any], None], store: Any, study: str,
               path: Path) -> Callable[[RunEvent, Any], None]:
    """The live view's event handler, then the page rewritten on the first event and
    after each finished run (a page costs a second or two of plotting: not per epoch)."""
    first = [True]

    def on_event(event: RunEvent, source: Any = None) -> None:
        view(event, source)
        if first[0] or event.kind in ("done", "failed"):
            first[0] = False
            _write_page(store, study, path, refresh_s=HTML_REFRESH_S)

    return on_event


def _command_args(study_file: Path, overrides: tuple[str, ...]) -> str:
    """The study file and its ``--set`` arguments, quoted for a POSIX shell to retype."""
    import shlex

    return shlex.join([str(study_file), *(a for o in overrides for a in ("--set", o))])


def _check_study_file(path: Path) -> None:
    """A study must be a readable text file: a directory or a binary file is one line
    (the YAML parser would answer with a traceback or a confusing syntax error)."""
    from ablate.errors import StudyError

    if path.is_dir():
        raise StudyError(f"{path}: is a directory; give a study file (YAML), e.g. "
                         f"studies/example.yaml")
    try:
        head = path.read_bytes()[:65536]
    except FileNotFoundError:
        return  # load_study says it, with the study files that exist
    except OSError as exc:
        raise StudyError(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        if b"\0" in head:
            raise UnicodeDecodeError("utf-8", head, head.index(b"\0"), len(head), "NUL byte")
        head.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":  # a cut in the middle of a character
            raise StudyError(f"{path}: not a text file (byte {exc.start} is not UTF-8 "
                             f"text); give a study file (YAML)") from None


def _follow(study: Any, store: Any, runs_dir: Path, node_rank: int, gpus: str | None,
            cpu_threads: int | None, retry_failed: bool) -> None:
    """``ablate run --node-rank K``: this node's agents of the runs node 0 trains."""

    from ablate.launch.orchestrator import Event, Follower

    def show(event: Event, _follower: Follower) -> None:
        run = event.run
        name = f"{escape(run.variant)} seed {run.seed} ({run.hash[:8]})"
        words = {"start": "join   ", "done": "done   ", "failed": "[red]failed[/] "}
        console.print(f"node {node_rank}: {words[event.kind]} {name}"
                      + (f": {event.detail}" if event.detail else ""))

    try:
        follower = Follower(study, store, runs_dir, node_rank, gpus=_gpus(gpus),
                            cpu_threads=cpu_threads, retry_failed=retry_failed, on_event=show)
    except USER_ERRORS as exc:
        fail(str(exc))
    outcome = _until_done(follower.run, "stopped this node's agent")
    joined = outcome.succeeded + outcome.failed
    console.print(f"{escape(study.name)}: node {node_rank} joined {joined} "
                  f"runs ({outcome.failed} failed here), {outcome.reused} were done already")
    if outcome.failed:
        raise typer.Exit(1)


def _until_done(run: Callable[[], Outcome], stopped: str) -> Outcome:
    """``run()``; a signal is exit code 130 with ``stopped`` said, an error one line."""
    from ablate.launch.orchestrator import Interrupted

    try:
        return run()
    except Interrupted as exc:
        console.print(f"[yellow]{escape(str(exc))}: {stopped}[/]")
        raise typer.Exit(130) from None
    except USER_ERRORS as exc:
        fail(str(exc))


def _gpus(spec: str | None) -> list[int] | None:
    from ablate.launch.local import parse_gpus

    return parse_gpus(spec)


def status(
    study: Annotated[str | None, typer.Argument(help="study name (default: all)")] = None,
    db: DbOption = None,
    runs: Annotated[bool, typer.Option("--runs", help="every run, not a line per variant")] =
        False,
    json_out: Annotated[bool, typer.Option("--json", help="every run as JSON")] = False,
    lost_after: Annotated[float, typer.Option(
        min=5, help="seconds without a heartbeat before a running run counts as lost")] = 60.0,
) -> None:
    """Show where each study stands: a line per variant, and its ETA.

    Each line counts the variant's runs done, running and failed, with its mean top-1;
    --runs shows every variant and seed, --json is for programs."""
    from dataclasses import asdict

    with frozen_imports():
        from ablate.cli.view import eta_seconds, jobs_table, runs_table, status_summary
        from ablate.store.db import Store

    try:
        store = Store(db, create=False)
        data = store.studies_runs([study] if study else None,
                                  lost_after=timedelta(seconds=lost_after))
        now = store.now()  # the clock the runs' times were written with
    except USER_ERRORS as exc:
        fail(str(exc))
    if json_out:
        out = {n: [{**_jsonable(asdict(r)), "eta_seconds": eta_seconds(r, now)} for r in rs]
               for n, rs in data.items()}
        typer.echo(json.dumps(out, indent=2))
        return
    if not data:
        typer.echo("no studies yet; start one with 'ablate run STUDY.yaml'")
    table = runs_table if runs else status_summary
    for name, rs in data.items():
        typer.echo(table(name, rs, now) + "\n")
        if any(r.job_id for r in rs):
            typer.echo(jobs_table(name, rs) + "\n")


def show(
    run_id: Annotated[str, typer.Argument(help="run id (config hash) or a unique prefix")],
    db: DbOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show one run: config, metrics, trick audits and log tail.

    RUN_ID is the run's config hash or a unique prefix of it, as ablate status --runs
    prints it."""
    from rich.table import Table

    from ablate.launch.local import log_tail
    from ablate.store.db import Store

    try:
        store = Store(db, create=False)
        run = store.find_run(run_id)
        metrics = store.metrics(run["hash"])
    except USER_ERRORS as exc:
        fail(str(exc))
    tail = log_tail(Path(run["run_dir"]), lines=20)
    code = run_code_record(Path(run["run_dir"]))
    if json_out:
        typer.echo(json.dumps({**_jsonable(run), "metrics": metrics, "log_tail": tail,
                               "code": code}, indent=2))
        return
    console.print(f"[bold]run {run['hash']}[/]  {run['status']}  ({run['run_dir']})")
    for link in run["studies"]:
        console.print(f"  study {link['study']}: {link['variant']}, seed {link['seed']}")
    if run["error"]:
        console.print(f"  [red]error:[/] {run['error']}")
    console.print_json(json.dumps(run["config"]))
    table = Table(title="metrics per epoch", title_justify="left")
    cols = ("epoch", "train_loss", "lr", "val_loss", "top1", "top5", "images_per_s", "seconds")
    for c in cols:
        table.add_column(c, justify="right")
    for m in metrics:
        table.add_row(*[_fmt(m.get(c)) for c in cols])
    console.print(table)
    for audit in (run.get("result") or {}).get("audit") or []:
        mark = "" if audit.get("effective", True) else "  [yellow](no effect)[/]"
        console.print(f"  audit: {audit['summary']}{mark}")
    _print_code(code)
    if tail:
        console.print("[dim]log tail:[/]")
        console.print(tail, markup=False, highlight=False)


def run_code_record(run_dir: Path) -> dict[str, Any]:
    """The code a run trained with, as its directory records it: the git commit, each
    component's fingerprint and modules, the training loop's fingerprint, and the files of
    its plugins' snapshot (``code/``)."""
    from zoo.contract import RunDir
    from zoo.plugins import CODE_DIR

    snap = run_dir / CODE_DIR
    files = sorted(str(p.relative_to(run_dir)) for p in snap.rglob("*.py")) \
        if snap.is_dir() else []
    cfg = RunDir(run_dir).config()
    if cfg is None:
        return {"components": {}, "snapshot": files}
    return {"commit": cfg.code.commit, "dirty": cfg.code.dirty, "core": cfg.code.core,
            "components": cfg.code.components, "snapshot": files}


def _print_code(code: dict[str, Any]) -> None:
    if not code["components"] and not code["snapshot"]:
        console.print("  code: not recorded (the trainer has not started, or predates "
                      "code fingerprints)")
        return
    dirty = " (uncommitted changes)" if code.get("dirty") else ""
    console.print(f"  code: commit {code.get('commit') or 'unknown'}{dirty}; training loop "
                  f"{code.get('core') or '?'}")
    for name, comp in code["components"].items():
        modules = ", ".join(comp.get("modules") or {})
        console.print(f"    {name:<28} {comp.get('fingerprint')}  {modules}",
                      markup=False, highlight=False)
    for file in code["snapshot"]:
        console.print(f"    snapshot: {file}", markup=False, highlight=False)


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _jsonable(obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(obj, default=str))
