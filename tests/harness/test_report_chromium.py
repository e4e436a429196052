"""The HTML report renders in headless Chromium: no console messages or errors, every plot
decodes, nothing is fetched from the network; a screenshot is taken (kept in the test's
temporary folder, ``GRAPHOPT_REPORT_SCREENSHOT=PATH`` copies it out to look at).

Needs Chromium (Debian: ``apt-get install chromium``); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from graphopt.harness.report import write_report
from graphopt.harness.store import ResultStore
from graphopt.harness.suite import load_suite, run_suite

TINY = Path(__file__).resolve().parents[2] / "bench" / "suites" / "tiny.toml"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 90
# Injected first into a copy of the page: collects script errors, console.error calls and
# resources that fail to load, then, after the load event, writes what it found (and how
# many images decoded) into an attribute that --dump-dom shows. It logs nothing itself, so
# any console line Chromium prints came from the page.
CHECKER = """<script>
window.__problems = [];
function __text(args) { return Array.prototype.join.call(args, " "); }
window.addEventListener("error", function (e) {
  var what = e.target && (e.target.src || e.target.href);
  __problems.push(e.message || ("failed to load " + (what || "?")));
}, true);
console.error = function () { __problems.push(__text(arguments)); };
console.warn = function () { __problems.push("warning: " + __text(arguments)); };
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.documentElement.setAttribute("data-check", JSON.stringify({
    problems: __problems, images: images.length, broken: broken.length,
    width: document.documentElement.scrollWidth}));
});
</script>"""
_CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)$", re.MULTILINE)


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--no-first-run",
               "--disable-extensions", "--enable-logging=stderr", "--v=0",
               f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                          check=False)


def test_the_report_renders_in_headless_chromium_without_console_errors(tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    store = ResultStore(tmp_path / "r.jsonl")
    run_suite(load_suite(TINY), store)
    page, _ = write_report(store.path, tmp_path / "report")

    html = page.read_text()
    checked = page.with_name("checked.html")
    checked.write_text(html.replace("<head>", "<head>" + CHECKER, 1)
                       if "<head>" in html else CHECKER + html)
    run = _chromium(browser, tmp_path / "profile", "--dump-dom", checked.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    match = re.search(r'data-check="([^"]*)"', run.stdout)
    assert match, f"the load event never ran: {run.stdout[:500]} {run.stderr[-1000:]}"
    check = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["problems"] == []
    assert check["images"] >= 3 and check["broken"] == 0, check
    assert _CONSOLE.findall(run.stderr) == []

    shot = tmp_path / "report.png"
    run = _chromium(browser, tmp_path / "profile", f"--screenshot={shot}",
                    "--window-size=1280,2400", "--hide-scrollbars", page.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert _CONSOLE.findall(run.stderr) == []
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("GRAPHOPT_REPORT_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["GRAPHOPT_REPORT_SCREENSHOT"])
