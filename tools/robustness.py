"""Run the fault-injection suite (tests/robustness, slow cases included) and print a table of every fault.

    python tools/robustness.py                 # every case: the fast ones CI runs and the slow ones
    python tools/robustness.py --fast          # only the fast ones
    python tools/robustness.py --json-out r.json -- -k yaml    # pytest arguments after --

Each case injects one fault (bad data, an interrupted or failing training run, a hostile or
wrong file, a bad inference input) and checks the promised behaviour. The table lists
fault | expected | outcome | PASS/FAIL, then the totals. XFAIL marks a known gap whose fix
belongs to another module (the reason says which and what); SKIP a case that could not run
here. Pytest runs in a subprocess, so a case that crashes the interpreter is still reported
(as FAIL: did not finish).

Exit code: 0 when no case failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from itertools import zip_longest
from pathlib import Path
from typing import Sequence

REPORT_ENV = "SSDLITE_ROBUSTNESS_REPORT"  # read by tests/robustness/conftest.py
STATUS = {"passed": "PASS", "xfailed": "XFAIL", "skipped": "SKIP"}  # anything else: FAIL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="only the fast cases (what CI runs)")
    parser.add_argument("--json-out", default=None, help="also write the rows and totals as JSON here")
    parser.add_argument("--show-output", action="store_true", help="show pytest's own output while it runs")
    parser.add_argument("--width", type=int, default=0, help="table width (default: the terminal's, at least 100)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments, after --")
    return parser


def suite_dir() -> Path:
    from ssdlite._paths import REPO_ROOT

    d = REPO_ROOT / "tests" / "robustness"
    if not d.is_dir():
        raise ValueError(f"{d} not found: the robustness suite runs from a source checkout of ssdlite")
    return d


def run_suite(fast: bool = False, pytest_args: Sequence[str] = (), show_output: bool = False) -> tuple[list[dict], int, float]:
    """Run pytest on tests/robustness in a subprocess; returns (rows, pytest exit code, seconds).

    A row: ``{"nodeid", "fault", "expected", "slow", "outcome", "message", "duration", "status"}``
    with status PASS, FAIL, XFAIL or SKIP, in collection order.
    """
    d = suite_dir()
    with tempfile.TemporaryDirectory(prefix="ssdlite_robustness_") as tmp:
        report = Path(tmp) / "results.jsonl"
        cmd = [sys.executable, "-m", "pytest", str(d), "-m", "not slow" if fast else "slow or not slow",
               "-p", "no:cacheprovider", "-q", "-rfE", *pytest_args]
        env = {**os.environ, REPORT_ENV: str(report)}
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=d.parent.parent, env=env, stdout=None if show_output else subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        seconds = time.monotonic() - t0
        records = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    collected: dict[str, dict] = {}
    results: dict[str, dict] = {}
    for r in records:
        (collected if r["event"] == "collected" else results)[r["nodeid"]] = r
    if not collected and proc.returncode != 0:
        tail = (proc.stdout or "").strip().splitlines()[-15:]
        raise RuntimeError(f"pytest exited with code {proc.returncode} before running any case:\n" + "\n".join(tail))
    rows = []
    for nodeid, c in collected.items():
        r = results.get(nodeid)
        if r is None:
            outcome, message, duration = "not run", f"did not finish (pytest exited with code {proc.returncode})", 0.0
        else:
            outcome, message, duration = r["outcome"] or "error", r["message"], r["duration"]
        rows.append({"nodeid": nodeid, "fault": c["fault"], "expected": c["expected"], "slow": c["slow"],
                     "outcome": outcome, "message": message, "duration": duration,
                     "status": STATUS.get(outcome, "FAIL")})
    return rows, proc.returncode, seconds


def totals(rows: list[dict]) -> dict[str, int]:
    out = {"tried": len(rows), "PASS": 0, "FAIL": 0, "XFAIL": 0, "SKIP": 0}
    for row in rows:
        out[row["status"]] += 1
    return out


def _outcome_text(row: dict) -> str:
    o = row["outcome"]
    if o == "passed":
        return f"as expected ({row['duration']:.1f} s)"
    if o == "xfailed":
        return "known gap, fix elsewhere (see below)"
    msg = " ".join(str(row["message"]).split())
    return f"{o}: {msg[:160]}{'...' if len(msg) > 160 else ''}" if msg else o


def format_table(rows: list[dict], width: int = 120) -> str:
    """fault | expected | outcome | PASS/FAIL, cells wrapped to the width; then the known gaps and failures."""
    width = max(100, width)
    w_fault = max(24, width * 30 // 100)
    w_out = max(20, width * 26 // 100)
    w_status = 5
    w_exp = width - w_fault - w_out - w_status - 9
    cols = [("fault", w_fault), ("expected", w_exp), ("outcome", w_out), ("", w_status)]
    sep = "-+-".join("-" * w for _, w in cols)
    lines = [" | ".join(f"{h:<{w}}" for h, w in cols), sep]
    for row in rows:
        fault = row["fault"] + (" [slow]" if row["slow"] else "")
        cells = [textwrap.wrap(text, w) or [""] for text, (_, w) in
                 zip((fault, row["expected"], _outcome_text(row), row["status"]), cols)]
        for parts in zip_longest(*cells, fillvalue=""):
            lines.append(" | ".join(f"{p:<{w}}" for p, (_, w) in zip(parts, cols)).rstrip())
    t = totals(rows)
    lines.append(sep)
    lines.append(f"{t['tried']} faults tried: {t['PASS']} handled as specified (PASS), {t['XFAIL']} known gaps "
                 f"(XFAIL: fix belongs to another module), {t['FAIL']} failed, {t['SKIP']} skipped")
    gaps = [r for r in rows if r["status"] == "XFAIL"]
    if gaps:
        lines.append("\nKnown gaps (the fix each needs):")
        lines += [textwrap.fill(f"- {r['fault']}: {r['message']}", width, subsequent_indent="  ") for r in gaps]
    failed = [r for r in rows if r["status"] == "FAIL"]
    if failed:
        lines.append("\nFailures:")
        lines += [textwrap.fill(f"- {r['fault']} ({r['nodeid']}): {r['outcome']}: {r['message']}", width,
                                subsequent_indent="  ") for r in failed]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    import shutil

    extra = [a for a in args.pytest_args if a != "--"]
    rows, code, seconds = run_suite(fast=args.fast, pytest_args=extra, show_output=args.show_output)
    width = args.width or shutil.get_terminal_size((120, 40)).columns
    print(format_table(rows, width))
    print(f"\n{'fast cases only' if args.fast else 'all cases (slow included)'}; {seconds:.0f} s; pytest exit code {code}")
    t = totals(rows)
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"totals": t, "seconds": seconds, "rows": rows}, indent=2))
        print(f"wrote {out}")
    return 1 if t["FAIL"] else 0


if __name__ == "__main__":
    from ssdlite.apps.cli import run

    sys.exit(run(main, build_parser()))
