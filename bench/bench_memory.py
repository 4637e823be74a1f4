"""Memory: peak resident memory of the clock and of a dispatcher with 100,000 patients.

Run from the repository root::

    .venv/bin/python -m bench.bench_memory                 # 100,000 patients, SQLite
    .venv/bin/python -m bench.bench_memory --postgres      # and on PostgreSQL
    .venv/bin/python -m bench.bench_memory --quick         # 5,000 patients, for a smoke run

Both are the real processes of the ``Procfile``, started as a deployment starts them:

* **clock**: ``flask --app backend reminders clock`` on a database of N patients on
  mixed regimens and an empty outbox, and its planning worker processes (one per
  core: ``reminders/planning_workers.py``), each measured on its own. Its first planning pass (run at start, as after
  any restart) writes the next 24 hours and the record of the past 24 for every
  patient: the largest pass it ever makes. Once those rows are committed, and the
  follow-up job has run, the clock is stopped with SIGTERM.
* **dispatcher**: ``flask --app backend reminders dispatch --once`` on the same
  patients with a backlog of due messages, sending through the real twilio client to
  the Twilio-compatible fake (its own process).

The peak resident set size is the kernel's high-water mark of the process
(``VmHWM`` in ``/proc/<pid>/status``: the most memory it ever held), read until it
exits, not a sample of its current size. Target: under 300 MB each.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from bench.common import (
    REPO_ROOT,
    FakeTwilioProcess,
    bench_engine,
    count_rows,
    dispatcher_environment,
    format_table,
    headline,
    no_proxy_environment,
    postgres_database,
    reminders_command,
    seed_due_messages,
    seed_population,
    sqlite_database,
)
from reminders.data.models import OutboundMessage

TARGET_MB = 300.0


def _env(url: str, **extra: str) -> dict[str, str]:
    return no_proxy_environment() | {"DATABASE_URL": url, "PYTHONUNBUFFERED": "1"} | extra


def high_water_mb(pid: int) -> float:
    """The process's peak resident set size so far (``VmHWM``), in MB; 0 once it is gone.

    Not ``ru_maxrss`` of the reaped child: Linux carries the parent's peak over into a
    child it forks, and this process holds 100,000 seeded rows when it starts them.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children_of(pid: int) -> list[int]:
    """The process's child processes (the clock's planning workers and their helper)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return children


def _watch(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Wait for ``process``, reading its high-water mark meanwhile; (exit code, peak MB)."""
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, high_water_mb(process.pid))
        time.sleep(0.05)
    return process.returncode, peak


def clock_peak(engine: Engine, url: str, timeout: float) -> list[dict[str, Any]]:
    """Run the clock until its first planning pass is committed; its and its workers' peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(
        reminders_command("clock"),
        cwd=REPO_ROOT,
        env=_env(url, SMS_BACKEND="console"),
        stderr=subprocess.DEVNULL,
    )
    rows = 0
    workers: dict[int, float] = {}
    try:
        deadline = time.monotonic() + timeout
        # The pass commits once, at its end: the first rows seen are all of them.
        while rows == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the clock wrote nothing within {timeout:.0f} s")
            if process.poll() is not None:
                raise RuntimeError(f"the clock exited with {process.returncode}")
            time.sleep(1)
            for child in children_of(process.pid):
                workers[child] = max(workers.get(child, 0.0), high_water_mb(child))
            rows = count_rows(engine, OutboundMessage)
        pass_seconds = time.perf_counter() - started
        time.sleep(3)  # the follow-up job runs at start too
        peak = high_water_mb(process.pid)
        for child in children_of(process.pid):
            workers[child] = max(workers.get(child, 0.0), high_water_mb(child))
    finally:
        process.send_signal(signal.SIGTERM)
    code, _ = _watch(process)
    results = [
        {
            "process": "clock (`reminders clock`), first planning pass",
            "rows": rows,
            "seconds": pass_seconds,
            "peak_mb": peak,
            "exit": code,
        }
    ]
    # Planning workers (reminders/planning_workers.py): each is a process of its own.
    planning = sorted(workers.values(), reverse=True)
    if planning:
        results.append(
            {
                "process": f"largest of the clock's {len(planning)} child processes "
                "(planning workers)",
                "rows": rows,
                "seconds": pass_seconds,
                "peak_mb": planning[0],
                "exit": code,
            }
        )
    return results


def dispatcher_peak(engine: Engine, url: str, backlog: int) -> dict[str, Any]:
    """Run ``reminders dispatch --once`` through a backlog; its peak RSS."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM checkin")
        conn.exec_driver_sql("DELETE FROM outboundmessage")
    seed_due_messages(engine, backlog, datetime.now(UTC) - timedelta(minutes=1))
    with FakeTwilioProcess() as fake:
        started = time.perf_counter()
        process = subprocess.Popen(
            reminders_command("dispatch", "--once"),
            cwd=REPO_ROOT,
            env=dispatcher_environment(url, fake.base_url) | {"PYTHONUNBUFFERED": "1"},
            stderr=subprocess.DEVNULL,
        )
        code, peak = _watch(process)
        seconds = time.perf_counter() - started
        accepted = fake.accepted()
    return {
        "process": f"dispatcher (`reminders dispatch --once`), {backlog:,} due",
        "rows": accepted,
        "seconds": seconds,
        "peak_mb": peak,
        "exit": code,
    }


def measure(url: str, patients: int, backlog: int, timeout: float) -> list[dict[str, Any]]:
    """Seed ``patients`` at ``url`` and measure both processes."""
    engine = bench_engine(url)
    population = seed_population(engine, patients, datetime.now(UTC), quiet_hours=False)
    print(f"  {population.describe()}", flush=True)
    results = [*clock_peak(engine, url, timeout), dispatcher_peak(engine, url, backlog)]
    engine.dispose()
    for result in results:
        result["database"] = url.split(":", 1)[0].split("+", 1)[0]
        result["patients"] = patients
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--backlog", type=int, default=20_000, help="messages the dispatcher sends")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--quick", action="store_true", help="5,000 patients, 500 messages")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the clock's pass")
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the table and return its rows (for the smoke test)."""
    args = parse_args(argv)
    patients, backlog = (5_000, 500) if args.quick else (args.patients, args.backlog)
    print(headline("Memory"), flush=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-", dir=args.workdir) as tmp:
        print("SQLite", flush=True)
        results += measure(
            sqlite_database(Path(tmp), "memory.sqlite3"), patients, backlog, args.timeout
        )
        if args.postgres:
            print("PostgreSQL", flush=True)
            results += measure(postgres_database(), patients, backlog, args.timeout)
    print(
        format_table(
            "Peak resident memory (VmHWM)",
            ["process", "database", "patients", "rows / messages", "s", "peak MB", "target", "met"],
            [
                [
                    r["process"],
                    r["database"],
                    r["patients"],
                    r["rows"],
                    r["seconds"],
                    r["peak_mb"],
                    f"< {TARGET_MB:g}",
                    "yes" if r["peak_mb"] < TARGET_MB else "no",
                ]
                for r in results
            ],
        )
    )
    return results


if __name__ == "__main__":
    main()
