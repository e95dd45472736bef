"""pytest on this machine, with or without coverage (what the local runtime's tests run)."""

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from infra.layout import Layout
from infra.runtime.base import say


def pytest(layout: Layout, args: Sequence[str], *, env: Mapping[str, str], cov: bool) -> int:
    """pytest's exit code; with ``cov``, run under coverage, its report printed and written as
    HTML, and the failed tests named after it."""
    if not cov:
        return subprocess.run(
            [sys.executable, "-m", "pytest", *args], env=dict(env), cwd=layout.root, check=False
        ).returncode
    for old in layout.root.glob(".coverage*"):
        old.unlink()
    results = layout.run_dir / "pytest-results.xml"
    results.unlink(missing_ok=True)
    code = subprocess.run(
        [sys.executable, "-m", "coverage", "run", "-m", "pytest", *args, f"--junitxml={results}"],
        env=dict(env),
        cwd=layout.root,
        check=False,
    ).returncode
    subprocess.run(
        [sys.executable, "-m", "coverage", "combine", "-q"], cwd=layout.root, check=False
    )
    report = subprocess.run(
        [sys.executable, "-m", "coverage", "report"], cwd=layout.root, check=False
    )
    subprocess.run([sys.executable, "-m", "coverage", "html", "-q"], cwd=layout.root, check=False)
    say("coverage: HTML report in htmlcov/index.html")
    if code:
        # The report is long: whoever reads only the end of the output (a CI log's tail) still
        # learns which tests failed.
        for line in failed_tests(results):
            say(f"FAILED {line}")
    return code or report.returncode


def failed_tests(results: Path) -> list[str]:
    try:
        cases = ET.parse(results).getroot().iter("testcase")  # noqa: S314 (pytest's own file)
    except (OSError, ET.ParseError):
        return ["(no test report: see the output above)"]
    failed = []
    for case in cases:
        for problem in (*case.findall("failure"), *case.findall("error")):
            message = (
                (problem.get("message") or "").splitlines()[0][:200]
                if problem.get("message")
                else ""
            )
            failed.append(f"{case.get('classname')}::{case.get('name')} - {message}")
    return failed
