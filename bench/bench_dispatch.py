"""Dispatch: a backlog of due messages through the real twilio client, against the raw client.

Run from the repository root::

    .venv/bin/python -m bench.bench_dispatch                 # 20,000 messages
    .venv/bin/python -m bench.bench_dispatch --repeat 3
    .venv/bin/python -m bench.bench_dispatch --quick         # seconds, for a smoke run
    .venv/bin/python -m bench.bench_dispatch --no-postgres   # SQLite only

A Twilio-compatible server (``tests.twilio_fake.FakeTwilio``) runs in its own process on
127.0.0.1, as Twilio would be on another machine. In the same run:

* **raw client** (the baseline): ``twilio.rest.Client`` posting the same bodies to the
  same numbers from a ``ThreadPoolExecutor`` with as many threads as a dispatcher
  uses, no database. Measured before and after the dispatch runs; the ratio uses the
  median of those measurements.
* **SQLite, in process**: :func:`reminders.dispatch.dispatch_due_messages` on a
  SQLite file holding the backlog: claim a batch, send each message, record its SID.
* **dispatcher processes**: ``flask --app backend reminders dispatch --once`` started
  1 (SQLite), and 1, 2 and 4 times side by side (PostgreSQL, ``FOR UPDATE SKIP
  LOCKED``), on a database named ``bench``. Their rate is measured from the first
  claim to the last recorded send (``claimed_at``/``sent_at`` in the outbox), so the
  second or so a process needs to start is not counted; the wall time including it
  is shown too.

Every run checks that each message was sent exactly once (the fake's count of
accepted messages equals the backlog). Target: each full path at least 80% of the
raw client's rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from twilio.rest import Client

from bench.common import (
    STATUS_CALLBACK,
    FakeTwilioProcess,
    Stopwatch,
    bench_engine,
    format_table,
    headline,
    phone_of,
    postgres_database,
    reminder_body,
    seed_due_messages,
    seed_population,
    spread,
    sqlite_database,
    start_dispatcher,
    status_counts,
)
from reminders.data.models import OutboundMessage
from reminders.dispatch import dispatch_due_messages
from reminders.gateways import TwilioGateway
from tests.twilio_fake import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, FROM_VALID

TARGET = 0.80
DEFAULT_MESSAGES = 20_000
QUICK_MESSAGES = 400
THREADS = 8  # the dispatcher's default (reminders dispatch --threads)


@dataclass
class Run:
    """One measured path: how many messages in how many seconds, and whether all went once."""

    path: str
    messages: int
    seconds: float
    wall: float
    accepted: int
    sent: int

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds


def raw_client_run(base_url: str, count: int, threads: int) -> Run:
    """The baseline: the twilio client alone, from a thread pool, no database."""
    client = Client(FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN)
    client.api.base_url = base_url  # the client's own way to talk to another host
    messages = client.api.v2010.account.messages  # resolved once, before the threads
    jobs = [(phone_of(n + 1), reminder_body(n)) for n in range(count)]

    def send(job: tuple[str, str]) -> str:
        return messages.create(
            to=job[0], from_=FROM_VALID, body=job[1], status_callback=STATUS_CALLBACK
        ).sid

    with Stopwatch() as sw, ThreadPoolExecutor(max_workers=threads) as pool:
        sids = list(pool.map(send, jobs))
    return Run("raw twilio client, thread pool, no database", count, sw.wall, sw.wall, 0, len(sids))


def _backlog(engine: Engine, count: int, due: datetime) -> None:
    """Empty the outbox and queue ``count`` messages due at ``due`` (one per patient)."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM checkin"))
        conn.execute(text("DELETE FROM outboundmessage"))
    seed_due_messages(engine, count, due)


def _span(engine: Engine) -> float:
    """Seconds from the first claim to the last recorded send."""
    with engine.connect() as conn:
        first, last = conn.execute(
            select(func.min(OutboundMessage.claimed_at), func.max(OutboundMessage.sent_at))
        ).one()
    if isinstance(first, str):  # SQLite hands back text for a bare aggregate
        first, last = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return (last - first).total_seconds()


def in_process_run(engine: Engine, fake: FakeTwilioProcess, count: int, threads: int) -> Run:
    """``dispatch_due_messages`` in this process, on the database of ``engine``."""
    _backlog(engine, count, datetime.now(UTC) - timedelta(minutes=1))
    gateway = TwilioGateway(
        FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, from_number=FROM_VALID, api_base_url=fake.base_url
    )
    before = fake.accepted()
    with Stopwatch() as sw:
        report = dispatch_due_messages(
            engine,
            gateway,
            lambda: datetime.now(UTC),
            threads=threads,
            status_callback=STATUS_CALLBACK,
        )
    gateway.close()
    return Run(
        f"dispatch_due_messages, {engine.dialect.name}, in process",
        count,
        sw.wall,
        sw.wall,
        fake.accepted() - before,
        report.sent,
    )


def process_run(
    engine: Engine, url: str, fake: FakeTwilioProcess, count: int, processes: int, threads: int
) -> Run:
    """``processes`` × ``flask reminders dispatch --once`` side by side."""
    _backlog(engine, count, datetime.now(UTC) - timedelta(minutes=1))
    options = ("--once", "--threads", str(threads))
    before = fake.accepted()
    with Stopwatch() as sw:
        children = [start_dispatcher(url, fake.base_url, *options) for _ in range(processes)]
        codes = [child.wait() for child in children]
    if any(codes):
        raise RuntimeError(f"a dispatcher exited with {codes}")
    counts = status_counts(engine)
    label = f"{processes} × `reminders dispatch --once`, {engine.dialect.name}"
    return Run(
        label, count, _span(engine), sw.wall, fake.accepted() - before, counts.get("sent", 0)
    )


def measure(
    count: int, threads: int, workdir: Path, postgres: bool, sqlite_processes: bool
) -> tuple[list[Run], list[Run]]:
    """Every path once, bracketed by the baseline; (baselines, full paths)."""
    baselines: list[Run] = []
    paths: list[Run] = []
    with FakeTwilioProcess() as fake:
        baselines.append(raw_client_run(fake.base_url, count, threads))
        sqlite_url = sqlite_database(workdir, "dispatch.sqlite3")
        engine = bench_engine(sqlite_url)
        seed_population(engine, count, quiet_hours=False)
        paths.append(in_process_run(engine, fake, count, threads))
        if sqlite_processes:
            paths.append(process_run(engine, sqlite_url, fake, count, 1, threads))
        engine.dispose()
        if postgres:
            pg_url = postgres_database()
            engine = bench_engine(pg_url)
            seed_population(engine, count, quiet_hours=False)
            paths.append(in_process_run(engine, fake, count, threads))
            for processes in (1, 2, 4):
                paths.append(process_run(engine, pg_url, fake, count, processes, threads))
            engine.dispose()
        baselines.append(raw_client_run(fake.base_url, count, threads))
    return baselines, paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MESSAGES} messages")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--no-processes", action="store_true", help="skip the SQLite dispatcher process run"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the table and return its rows (for the smoke test)."""
    args = parse_args(argv)
    count = QUICK_MESSAGES if args.quick else args.messages
    print(headline("Dispatch", postgres=True), flush=True)
    print(f"{count:,} messages, {args.threads} threads per sender", flush=True)
    baselines: list[Run] = []
    paths: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-", dir=args.workdir) as tmp:
        for attempt in range(args.repeat):
            print(f"run {attempt + 1}/{args.repeat}", flush=True)
            base, full = measure(
                count, args.threads, Path(tmp), not args.no_postgres, not args.no_processes
            )
            baselines += base
            for run in full:
                paths.setdefault(run.path, []).append(run)
                ok = "ok" if run.accepted == run.sent == run.messages else "MISMATCH"
                print(f"  {run.path}: {run.rate:,.0f} msg/s ({ok})", flush=True)
            print(f"  baseline: {', '.join(f'{b.rate:,.0f}' for b in base)} msg/s", flush=True)
    base_rate = statistics.median(b.rate for b in baselines)
    rows: list[dict[str, Any]] = [
        {
            "path": baselines[0].path,
            "rate": base_rate,
            "rates": [b.rate for b in baselines],
            "ratio": 1.0,
            "wall": [b.wall for b in baselines],
            "once": "-",
        }
    ]
    for label, runs in paths.items():
        rates = [r.rate for r in runs]
        rows.append(
            {
                "path": label,
                "rate": statistics.median(rates),
                "rates": rates,
                "ratio": statistics.median(rates) / base_rate,
                "wall": [r.wall for r in runs],
                "once": "yes"
                if all(r.accepted == r.sent == r.messages for r in runs)
                else "NO: " + ", ".join(f"{r.accepted} accepted/{r.sent} sent" for r in runs),
            }
        )
    print(
        format_table(
            f"Dispatch of {count:,} due messages (median (min-max) over {args.repeat} run(s))",
            ["path", "msg/s", "of raw client", "target", "met", "wall s", "each sent once"],
            [
                [
                    r["path"],
                    spread(r["rates"]),
                    f"{r['ratio']:.0%}",
                    "-" if r["ratio"] == 1.0 else f">= {TARGET:.0%}",
                    "-" if r["ratio"] == 1.0 else ("yes" if r["ratio"] >= TARGET else "no"),
                    spread(r["wall"]),
                    r["once"],
                ]
                for r in rows
            ],
        )
    )
    return rows


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
