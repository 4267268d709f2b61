"""The HTML report page in a real browser: Debian's headless Chromium loads the page that
``ablate report --format html`` writes from the committed results.db, and the numbers of
its rendered DOM are checked against the database (means and paired t intervals computed
here with scipy from the raw rows); a click on a header sorts the rows; a screenshot is
not blank; ``ablate run --html`` leaves the page of a study it trained."""

from __future__ import annotations

import io
import re
import shutil
import sqlite3
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from ablate.cli import app
from tests.conftest import ROOT

STUDY = "fashion_mnist_tricks"
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y "
                             "chromium; .ci/run installs it)")
runner = CliRunner()


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium, offline and without a profile of its own; its stdout."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
        capture_output=True, text=True, timeout=300)  # generous: a loaded 2-core box
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html")
    db = out / "results.db"
    shutil.copy(ROOT / "results.db", db)
    res = runner.invoke(app, ["report", STUDY, "--db", f"sqlite:///{db}", "--format", "html",
                              "-o", str(out / "page.html")])
    assert res.exit_code == 0, res.output
    return out / "page.html"


def reference() -> pd.DataFrame:
    """Per variant, from the raw rows: mean top-1/top-5 over succeeded runs and the paired
    per-seed differences with the baseline, with a 95% t interval (scipy)."""
    with sqlite3.connect(ROOT / "results.db") as con:
        rows = con.execute(
            "SELECT sr.variant_index, sr.variant, sr.seed, res.top1, res.top5 FROM study_run sr "
            "JOIN study s ON s.id = sr.study_id JOIN run r ON r.hash = sr.run_hash "
            "JOIN result res ON res.run_hash = r.hash WHERE s.name = ? AND "
            "r.status = 'succeeded' ORDER BY sr.variant_index, sr.seed", (STUDY,)).fetchall()
    by_variant: dict[int, dict[int, tuple[float, float]]] = defaultdict(dict)
    names = {}
    for index, variant, seed, top1, top5 in rows:
        by_variant[index][seed] = (top1, top5)
        names[index] = variant
    base = by_variant[0]
    out = []
    for index, seeds in sorted(by_variant.items()):
        top1 = np.array([v[0] for v in seeds.values()])
        top5 = np.array([v[1] for v in seeds.values()])
        row = {"variant": names[index], "top1": top1.mean(), "top5": top5.mean(),
               "delta": np.nan, "low": np.nan, "high": np.nan,
               "seeds": {s: v[0] for s, v in seeds.items()}}
        if index:
            diff = np.array([seeds[s][0] - base[s][0] for s in seeds if s in base])
            half = stats.t.ppf(0.975, len(diff) - 1) * stats.sem(diff)
            row.update(delta=diff.mean(), low=diff.mean() - half, high=diff.mean() + half,
                       p=stats.ttest_1samp(diff, 0.0).pvalue)
        out.append(row)
    frame = pd.DataFrame(out)
    # The report's decision: Holm across the variants (statsmodels), no margin declared.
    tested = frame.index[1:]
    reject = multipletests(frame.loc[tested, "p"], alpha=0.05, method="holm")[0]
    frame["decision"] = "baseline"
    for i, r in zip(tested, reject, strict=True):
        plain = frame.at[i, "p"] <= 0.05
        side = "better" if frame.at[i, "delta"] > 0 else "worse"
        frame.at[i, "decision"] = ((side if r else "undecided")
                                   + ("" if r == plain else f" (unadjusted: {side})"))
    return frame


def improvement_table(dom: str) -> pd.DataFrame:
    """The study's improvement table as the browser left it: each cell's text and, for
    the numeric columns, its data-sort value (``<column> sort``). Read with lxml by hand
    because each row holds tables in its <details>, which pandas' read_html would merge
    into the rows."""
    from lxml import html as lxml_html

    table = lxml_html.fromstring(dom).get_element_by_id(f"improvement-{STUDY}")
    header = [th.text_content() for th in table.xpath("./thead/tr/th")]
    rows = []
    for tr in table.xpath("./tbody/tr"):
        row = {}
        for name, td in zip(header, tr.xpath("./td"), strict=True):
            row[name] = td.text_content().strip()
            if td.get("data-sort"):
                row[f"{name} sort"] = float(td.get("data-sort"))
        rows.append(row)
    return pd.DataFrame(rows)


def _first_number(text: str) -> float:
    return float(re.search(r"[-+]?\d+\.\d+", text).group())


def test_the_page_is_self_contained(page: Path) -> None:
    text = page.read_text()
    links = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert links and all(link.startswith(("data:image/png;base64,", "#")) for link in links)
    assert "<script src" not in text and "@import" not in text and "url(" not in text


@needs_chromium
def test_rendered_table_matches_the_database(page: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    table = improvement_table(dom)
    ref = reference()
    assert len(table) == len(ref) == 7
    assert list(table["tricks"]) == ["-", *ref["variant"][1:]]
    for (_, shown), (_, want) in zip(table.iterrows(), ref.iterrows(), strict=True):
        top1, top5 = (float(x) for x in shown["top1/top5"].split("/"))
        assert top1 == pytest.approx(want["top1"], abs=0.005)
        assert top5 == pytest.approx(want["top5"], abs=0.005)
        assert shown["top1/top5 sort"] == pytest.approx(want["top1"], abs=1e-9)
        if np.isnan(want["delta"]):
            assert shown["improve"] == "baseline"
            continue
        assert _first_number(shown["improve"]) == pytest.approx(want["delta"], abs=0.005)
        assert shown["improve sort"] == pytest.approx(want["delta"], abs=1e-9)
        low, high = (float(x) for x in re.findall(r"[-+]\d+\.\d+", shown["95% CI"]))
        assert (low, high) == (pytest.approx(want["low"], abs=0.005),
                               pytest.approx(want["high"], abs=0.005))
        assert shown["decision"] == want["decision"]
    # Per-seed values, in each row's <details>.
    for index, want in ref.iterrows():
        (seeds,) = pd.read_html(io.StringIO(dom), attrs={"id": f"seeds-{STUDY}-{index}"})
        got = dict(zip(seeds["seed"], seeds["top1"], strict=True))
        assert got.keys() == want["seeds"].keys()
        for seed, value in want["seeds"].items():
            assert got[seed] == pytest.approx(value, abs=0.005)
    # The config differences of a variant: label smoothing changes exactly its trick.
    (config,) = pd.read_html(io.StringIO(dom), attrs={"id": f"config-{STUDY}-1"})
    assert list(config["config key"]) == ["tricks.label_smoothing.smoothing"]
    assert list(config["this variant"]) == [0.1]
    # Every column of the frame, unrounded, in the second table.
    (full,) = pd.read_html(io.StringIO(dom), attrs={"id": f"full-{STUDY}"})
    unrounded = full["delta_top1"][1:].astype(float).to_numpy()
    assert unrounded == pytest.approx(ref["delta"][1:], abs=1e-9)


@needs_chromium
def test_a_click_on_a_header_sorts_by_the_unrounded_numbers(page: Path, tmp_path: Path) -> None:
    clicked = tmp_path / "clicked.html"
    click = ('<script>document.querySelectorAll("#improvement-' + STUDY + ' th")'
             '.forEach(th => { if (th.textContent === "improve") th.click(); });</script>')
    clicked.write_text(page.read_text().replace("</body>", click + "</body>"))
    dom = chromium(tmp_path, "--dump-dom", clicked.as_uri())
    table = improvement_table(dom)
    ref = reference()[1:].sort_values("delta")
    # Ascending by the delta; the baseline (no number) after the numbers.
    assert list(table["tricks"]) == [*ref["variant"], "-"]
    assert 'aria-sort="ascending"' in dom


@needs_chromium
def test_a_screenshot_of_the_page_is_not_blank(page: Path, tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    shot = tmp_path / "page.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    with Image.open(shot) as img:
        assert img.size == (1280, 2000)
        gray = img.convert("L")
        # A blank (or failed) page is one colour; this one has text, a table and plots.
        assert ImageStat.Stat(gray).stddev[0] > 20
        assert len(gray.getcolors(maxcolors=256 * 256) or range(256)) > 50


def test_a_directory_gets_one_page_per_study(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    shutil.copy(ROOT / "results.db", db)
    res = runner.invoke(app, ["report", "--db", f"sqlite:///{db}", "--format", "html",
                              "-o", str(tmp_path / "pages")])
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "pages").iterdir()] == [f"{STUDY}.html"]
    res = runner.invoke(app, ["report", "nope", "--db", f"sqlite:///{db}", "--format", "html",
                              "-o", str(tmp_path / "x.html")])
    assert res.exit_code == 2 and "unknown study 'nope'" in res.output
    assert not (tmp_path / "x.html").exists()


def test_ablate_run_html_rewrites_the_page_after_each_finished_run(
        digits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ablate.report.html as html_mod
    from tests.test_orchestrator import study_dict, write_study

    study = study_dict(digits_dir, seeds=[0])
    study["base"]["epochs"] = 1
    study["variants"] = study["variants"][:1]
    path = write_study(tmp_path / "s.yaml", study)
    page, db = tmp_path / "live" / "study.html", tmp_path / "results.db"
    seen: list[tuple[int | None, int]] = []
    write = html_mod.write_pages

    def spy(*args: object, **kwargs: object) -> list[Path]:
        out = write(*args, **kwargs)  # type: ignore[arg-type]
        done = int(re.search(r"(\d+) succeeded", page.read_text()).group(1))
        seen.append((kwargs.get("refresh_s"), done))  # type: ignore[arg-type]
        return out

    monkeypatch.setattr(html_mod, "write_pages", spy)
    res = runner.invoke(app, ["run", str(path), "--db", f"sqlite:///{db}", "--runs-dir",
                              str(tmp_path / "runs"), "--max-parallel", "1", "--html", str(page)])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output
    # Once when the study starts, after each of its two runs, then the final page.
    assert seen == [(30, 0), (30, 1), (30, 2), (None, 2)]
    text = page.read_text()
    assert 'http-equiv="refresh"' not in text  # trained: a browser stops reloading it
    with sqlite3.connect(db) as con:
        top1 = dict(con.execute("SELECT sr.variant, res.top1 FROM study_run sr JOIN result res "
                                "ON res.run_hash = sr.run_hash").fetchall())
    for variant, value in top1.items():
        assert f"{value:.2f}/" in text, variant
