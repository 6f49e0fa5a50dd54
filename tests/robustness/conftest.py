"""The ``fault`` marker of the fault-injection suite and the hook that feeds tools/robustness.py.

Every case carries ``@pytest.mark.fault(name, expected)``: the fault it injects and the
behaviour it expects. When ``SSDLITE_ROBUSTNESS_REPORT`` names a file, each collected case and
each outcome is appended to it as a JSON line (``tools/robustness.py`` turns them into its table);
a case that records a ``seed`` property (``record_property("seed", n)``: the random timing of the
kill -9 trials) has it appended to its message, so a failure in the table can be replayed.

The cases' helpers are in ``tests/helpers.py`` (tools, configs) and the fixtures in
``tests/conftest.py`` (the shapes dataset); the faulty dataset is built in test_data_faults.py.
"""

from __future__ import annotations

import json
import os

import pytest

REPORT_ENV = "SSDLITE_ROBUSTNESS_REPORT"

# ----------------------------------------------------------------------------- the fault marker and the report hook


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fault(name, expected): the fault a robustness case injects and the behaviour it expects"
    )


def fault_of(item: pytest.Item) -> tuple[str, str]:
    """(fault name, expected behaviour) of a case: its innermost ``fault`` mark (a parameter's wins)."""
    own = [m for m in getattr(item, "own_markers", []) if m.name == "fault"]
    mark = own[-1] if own else item.get_closest_marker("fault")
    if mark is None:
        return item.name, ""
    name = mark.args[0] if mark.args else mark.kwargs.get("name", item.name)
    expected = mark.args[1] if len(mark.args) > 1 else mark.kwargs.get("expected", "")
    return str(name), str(expected)


def _emit(record: dict) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _ours(nodeid: str) -> bool:
    return "robustness/" in nodeid.replace("\\", "/")


def pytest_collection_finish(session: pytest.Session) -> None:
    if not os.environ.get(REPORT_ENV):
        return
    for item in session.items:
        if _ours(item.nodeid):
            name, expected = fault_of(item)
            _emit({"event": "collected", "nodeid": item.nodeid, "fault": name, "expected": expected,
                   "slow": item.get_closest_marker("slow") is not None})


_RUNNING: dict[str, dict] = {}


def _message(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail") and report.skipped:
        return str(report.wasxfail).removeprefix("reason: ")
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    text = report.longreprtext or ""
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    if errors:
        return " ".join(errors[:3])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not os.environ.get(REPORT_ENV) or not _ours(report.nodeid):
        return
    st = _RUNNING.setdefault(report.nodeid, {"outcome": None, "message": "", "duration": 0.0})
    st["duration"] += report.duration
    xfail = hasattr(report, "wasxfail")
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            st["outcome"] = "xpassed" if xfail else "passed"
        elif report.skipped:
            st["outcome"] = "xfailed" if xfail else "skipped"
        else:
            st["outcome"] = "failed" if report.when == "call" else "error"
        st["message"] = "" if report.passed and not xfail else _message(report)
    elif report.when == "teardown":
        if report.failed and st["outcome"] in (None, "passed"):
            st["outcome"], st["message"] = "error", "teardown: " + _message(report)
        seeds = [value for key, value in report.user_properties if key == "seed"]
        if seeds and f"seed {seeds[-1]}" not in st["message"]:
            st["message"] = " ".join(filter(None, [st["message"], f"[seed {seeds[-1]}]"]))
        _emit({"event": "result", "nodeid": report.nodeid, **_RUNNING.pop(report.nodeid)})
