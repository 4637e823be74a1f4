"""Paging: from an urgent reply's webhook to Twilio's receipt of the on-call SMS, under load.

Run from the repository root::

    .venv/bin/python -m bench.bench_paging                   # 300 replies/s for 20 s
    .venv/bin/python -m bench.bench_paging --rate 150 --seconds 30
    .venv/bin/python -m bench.bench_paging --quick           # seconds, for a smoke run
    .venv/bin/python -m bench.bench_paging --no-postgres     # SQLite only

The processes are laid out as in the ``Procfile``, each its own process: the web
(gunicorn with the ``web`` line's workers and threads, 4 threads on PostgreSQL as the
Procfile advises, ``backend:create_app()`` on
127.0.0.1), the dispatchers (``flask --app backend reminders dispatch``: 2 on
PostgreSQL, 1 on SQLite, default poll interval) and the Twilio-compatible server
(``tests.twilio_fake.FakeTwilio`` via ``bench.fake_twilio_server``), which the real
twilio client in the dispatchers reaches through ``TWILIO_API_BASE_URL``. No clock
process: it would only add its planning passes to the machine's load.

Each database is seeded with enrolled patients on the real regimen library (mixed
regimens, accented names of real length), each with a check-in waiting for a
temperature. This process then sends, at a fixed rate (open loop: each request leaves
at its moment whether or not earlier ones were answered), one signed webhook per
patient answering with a fever (``38,6``, ``39.1`` ...): each is an urgent alert, and
its on-call SMS is queued in the webhook's transaction.

Latency of a page = the fake's moment of acceptance of that on-call SMS (its
``datetime.now(UTC)`` when it records the message) minus the moment this process
began the webhook's request (``time.time()`` just before connecting). Both read the
same clock (``CLOCK_REALTIME`` of this machine), in two processes. The page names the
patient by hospital reference (``BENCH-<id>``), which ties it to its webhook.

Each engine runs twice in the same sitting: dispatchers woken by the commit (the
default), then with ``--no-wakeup`` (polling only, the baseline). A page that had not
arrived by the end (the load's duration plus twice the poll interval) counts as missing.
Target: p99 at most 1 s on PostgreSQL with 2 dispatchers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import re
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from bench.bench_inbound import (
    PUBLIC_BASE_URL,
    free_port,
    procfile_web_settings,
    start_gunicorn,
    warm_up,
)
from bench.common import (
    ACCENTED_NAMES,
    FakeTwilioProcess,
    bench_engine,
    child_pids,
    count_rows,
    cpu_seconds,
    format_table,
    headline,
    phone_of,
    postgres_database,
    seed_open_checkins,
    seed_population,
    sqlite_database,
    start_dispatcher,
)
from reminders.data.models import OutboundMessage
from tests.twilio_fake import FAKE_AUTH_TOKEN, FROM_VALID, inbound_sms_params, twilio_signature

TARGET_P99_S = 1.0
TARGET_RATE = 300.0
#: The benchmark's own PostgreSQL database: other benchmarks drop and create ``bench``.
DATABASE = "bench_paging"
#: The on-call number of every seeded team (``bench.common.seed_population``).
ONCALL = "+32470999999"
#: Web threads per worker on PostgreSQL: the ``Procfile`` advises ``WEB_THREADS=4`` there
#: (each worker overlaps its database round trips); SQLite keeps the default of 1.
PG_WEB_THREADS = 4
#: The dispatcher's default poll interval (``reminders dispatch --interval``).
POLL_SECONDS = 5.0
WARM_UP = 50
FEVERS = ("38,6", "39.1", "38.4", "39,2", "fièvre 38,9", "koorts 38.7")
_PAGE_PATIENT = re.compile(r"\(BENCH-(\d+)\)")


@dataclass
class Setup:
    """One measured layout."""

    engine: str  # "postgresql" or "sqlite"
    dispatchers: int
    wakeup: bool

    @property
    def label(self) -> str:
        """How the table names it."""
        woken = "woken at commit" if self.wakeup else "polling only (baseline)"
        return f"{self.engine}, {self.dispatchers} dispatcher(s), {woken}"


@dataclass
class Outcome:
    """What one run measured."""

    setup: Setup
    sent: int
    answered: int
    errors: int
    seconds: float
    answer_latencies: list[float] = field(default_factory=list)
    page_latencies: list[float] = field(default_factory=list)
    after_answer: list[float] = field(default_factory=list)
    pages: int = 0
    duplicates: int = 0
    load: str = ""
    #: CPU seconds used during the load and the wait for its pages: by the web's
    #: workers, and by the dispatchers together.
    web_cpu: float = 0.0
    dispatch_cpu: float = 0.0

    @property
    def rate(self) -> float:
        """Webhooks answered a second, from the first request's start to the last answer."""
        return self.answered / self.seconds if self.seconds else 0.0


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def fever_requests(patient_ids: list[int], seed: int = 14) -> list[tuple[int, bytes]]:
    """One signed fever webhook per patient: (patient id, the raw HTTP request)."""
    rng = random.Random(seed)
    url = f"{PUBLIC_BASE_URL}/twilio/sms"
    requests = []
    for pid in patient_ids:
        params = inbound_sms_params(phone_of(pid), rng.choice(FEVERS), FROM_VALID)
        body = urlencode(params).encode()
        head = (
            "POST /twilio/sms HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {twilio_signature(url, params, FAKE_AUTH_TOKEN)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append((pid, head.encode() + body))
    return requests


async def _one(port: int, raw: bytes, timeout: float) -> tuple[float, float, int]:
    """Send one request on its own connection: (start, answered, HTTP status or 0)."""
    start = time.time()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(raw)
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        status = int(status_line.split()[1])
    except (OSError, TimeoutError, ValueError, IndexError):
        status = 0
    return start, time.time(), status


async def _open_loop(
    port: int, requests: list[tuple[int, bytes]], rate: float, timeout: float
) -> dict[int, tuple[float, float, int]]:
    """Each request at its moment (``rate`` a second), answered or not; results by patient."""
    began = time.monotonic()
    tasks: dict[int, asyncio.Task[tuple[float, float, int]]] = {}
    for n, (pid, raw) in enumerate(requests):
        delay = began + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks[pid] = asyncio.create_task(_one(port, raw, timeout))
    return {pid: await task for pid, task in tasks.items()}


def start_dispatchers(
    url: str, fake: FakeTwilioProcess, count: int, wakeup: bool, logs: Path
) -> list[subprocess.Popen[bytes]]:
    """``count`` × ``flask --app backend reminders dispatch`` (the Procfile's ``dispatcher``)."""
    options = ["--interval", f"{POLL_SECONDS:g}"]
    if not wakeup:
        options.append("--no-wakeup")
    processes = []
    for n in range(count):
        with (logs / f"dispatch{n}.log").open("wb") as log:
            processes.append(
                start_dispatcher(url, fake.base_url, *options, stdout=log, stderr=subprocess.STDOUT)
            )
    deadline = time.monotonic() + 60
    for n in range(count):  # each listening and past its first pass
        while "first pass done" not in (logs / f"dispatch{n}.log").read_text():
            if time.monotonic() > deadline or processes[n].poll() is not None:
                raise RuntimeError(f"dispatcher {n} did not start: see {logs}")
            time.sleep(0.1)
    return processes


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each of ``processes`` (started here, by their pid) and wait for it.

    One still running after 30 s (gunicorn with queued requests) is killed, with its
    child processes (gunicorn's workers, by their pids), which would otherwise be left
    holding their transactions open.
    """
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            children = child_pids(process.pid)
            process.kill()
            process.wait()
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def measure(
    setup: Setup,
    fake: FakeTwilioProcess,
    rate: float,
    seconds: int,
    workers: int,
    threads: int,
    workdir: Path,
) -> Outcome:
    """One fresh database, the web, the dispatchers, and ``rate`` × ``seconds`` fever replies."""
    count = int(rate * seconds)
    if setup.engine == "postgresql":
        url = postgres_database(DATABASE)
    else:
        url = sqlite_database(workdir, "paging.sqlite3")
    engine = bench_engine(url)
    now = datetime.now(UTC)
    seed_population(engine, WARM_UP + count, now, quiet_hours=False, names=ACCENTED_NAMES)
    ids = list(range(1, WARM_UP + count + 1))
    seed_open_checkins(engine, ids, now - timedelta(minutes=30))
    requests = fever_requests(ids[WARM_UP:])
    port = free_port()
    server = start_gunicorn(url, port, workers, threads)
    logs = workdir / f"{setup.engine}-{setup.dispatchers}-{int(setup.wakeup)}"
    logs.mkdir(exist_ok=True)
    dispatchers: list[subprocess.Popen[bytes]] = []
    before = len(fake.received(ONCALL))
    try:
        warm_up(port, ids[:WARM_UP])
        dispatchers = start_dispatchers(url, fake, setup.dispatchers, setup.wakeup, logs)
        measured = [*child_pids(server.pid), *(d.pid for d in dispatchers)]
        cpu_before = {pid: cpu_seconds(pid) or 0.0 for pid in measured}
        load_before = os.getloadavg()
        # In a thread of its own: the calling thread may already run an event loop (a
        # test process whose earlier tests drove a browser), and asyncio.run refuses that.
        with ThreadPoolExecutor(max_workers=1) as load_thread:
            results = load_thread.submit(
                asyncio.run, _open_loop(port, requests, rate, timeout=30.0)
            ).result()
        load_after = os.getloadavg()
        answered = {pid: r for pid, r in results.items() if r[2] == 200}
        deadline = time.monotonic() + 2 * POLL_SECONDS + 10
        while time.monotonic() < deadline:
            if len(fake.received(ONCALL)) - before >= len(answered):
                break
            time.sleep(0.25)
        time.sleep(1.0)  # a page sent twice would arrive by now
        received = fake.received(ONCALL)[before:]
        cpu = {pid: (cpu_seconds(pid) or 0.0) - cpu_before[pid] for pid in measured}
    finally:
        stop(dispatchers)
        stop([server])  # killed if it still has queued requests after 30 s
    queued = count_rows(engine, OutboundMessage, OutboundMessage.recipient == "clinician")
    engine.dispose()
    first_page: dict[int, float] = {}
    duplicates = 0
    for body, at in received:
        match = _PAGE_PATIENT.search(body)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid in first_page:
            duplicates += 1
        first_page[pid] = min(at, first_page.get(pid, at))
    if queued != len(answered):
        print(f"  note: {queued} on-call rows queued for {len(answered)} answered webhooks")
    return Outcome(
        setup=setup,
        sent=len(requests),
        answered=len(answered),
        errors=len(results) - len(answered),
        seconds=(
            max(r[1] for r in answered.values()) - min(r[0] for r in answered.values())
            if answered
            else 0.0
        ),
        answer_latencies=[end - start for start, end, _ in answered.values()],
        page_latencies=[first_page[pid] - r[0] for pid, r in answered.items() if pid in first_page],
        after_answer=[first_page[pid] - r[1] for pid, r in answered.items() if pid in first_page],
        pages=sum(1 for pid in answered if pid in first_page),
        duplicates=duplicates,
        load=f"{load_before[0]:.2f} -> {load_after[0]:.2f}",
        web_cpu=sum(v for pid, v in cpu.items() if pid not in {d.pid for d in dispatchers}),
        dispatch_cpu=sum(cpu[d.pid] for d in dispatchers),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    workers, threads, _ = procfile_web_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="urgent replies a second")
    parser.add_argument("--seconds", type=int, default=20, help="load duration")
    parser.add_argument("--workers", type=int, default=workers, help="default: the Procfile's")
    parser.add_argument(
        "--threads", type=int, default=threads, help="on SQLite; default: the Procfile's"
    )
    parser.add_argument(
        "--pg-threads",
        type=int,
        default=PG_WEB_THREADS,
        help="on PostgreSQL; default: the Procfile's WEB_THREADS for PostgreSQL",
    )
    parser.add_argument("--pg-dispatchers", type=int, default=2)
    parser.add_argument("--sqlite-dispatchers", type=int, default=1)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--no-baseline", action="store_true", help="skip the polling-only runs")
    parser.add_argument("--quick", action="store_true", help="30 replies/s for 3 s")
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args(argv)


def setups(args: argparse.Namespace) -> list[Setup]:
    """The layouts to measure, each woken and (unless ``--no-baseline``) polling only."""
    engines = []
    if not args.no_postgres:
        engines.append(("postgresql", args.pg_dispatchers))
    if not args.no_sqlite:
        engines.append(("sqlite", args.sqlite_dispatchers))
    wakeups = (True,) if args.no_baseline else (True, False)
    return [Setup(engine, n, wakeup) for engine, n in engines for wakeup in wakeups]


def main(argv: list[str] | None = None) -> list[Outcome]:
    """Run the benchmark, print the table and return the outcomes (for the smoke test)."""
    args = parse_args(argv)
    rate, seconds = (30.0, 3) if args.quick else (args.rate, args.seconds)
    print(headline("Paging", postgres=True), flush=True)
    print(
        f"gunicorn --workers {args.workers} --threads {args.pg_threads} (PostgreSQL), "
        f"{args.threads} (SQLite); {rate:g} fever replies/s "
        f"for {seconds} s (open loop); dispatchers poll every {POLL_SECONDS:g} s",
        flush=True,
    )
    outcomes = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-paging-", dir=args.workdir) as tmp,
        FakeTwilioProcess() as fake,
    ):
        for setup in setups(args):
            print(f"{setup.label}", flush=True)
            threads = args.pg_threads if setup.engine == "postgresql" else args.threads
            outcome = measure(setup, fake, rate, seconds, args.workers, threads, Path(tmp))
            print(
                f"  {outcome.rate:,.0f} answered/s, {outcome.pages:,}/{outcome.answered:,} pages, "
                f"p99 {percentile(outcome.page_latencies or [math.inf], 99):.3f} s, "
                f"load {outcome.load}",
                flush=True,
            )
            outcomes.append(outcome)
    print(table(outcomes, rate, seconds))
    return outcomes


def table(outcomes: list[Outcome], rate: float, seconds: int) -> str:
    """The results as one table: pages' latency, answers' latency, and the baseline ratio."""
    baseline = {o.setup.engine: o for o in outcomes if not o.setup.wakeup and o.page_latencies}
    rows = []
    for o in outcomes:
        pages = o.page_latencies or [math.inf]
        p99 = percentile(pages, 99)
        base = baseline.get(o.setup.engine)
        ratio = (
            "-"
            if base is None or not o.setup.wakeup
            else (f"{percentile(base.page_latencies, 99) / p99:.1f} x")
        )
        target = o.setup.engine == "postgresql" and o.setup.wakeup
        rows.append(
            [
                o.setup.label,
                f"{o.rate:,.0f}",
                f"{o.pages:,}/{o.answered:,}"
                + (f" ({o.duplicates} twice)" if o.duplicates else ""),
                f"{percentile(pages, 50):.3f}",
                f"{percentile(pages, 95):.3f}",
                f"{p99:.3f}",
                f"{max(pages):.3f}",
                f"{percentile(o.answer_latencies or [math.inf], 50):.3f}",
                f"{percentile(o.answer_latencies or [math.inf], 99):.3f}",
                f"{percentile(o.after_answer or [math.inf], 99):.3f}",
                ratio,
                f"{o.web_cpu:.1f} / {o.dispatch_cpu:.1f}",
                ("yes" if p99 <= TARGET_P99_S else "no") if target else "-",
                o.load,
            ]
        )
    return format_table(
        f"Paging latency, webhook start to Twilio's receipt of the on-call SMS, "
        f"{rate:g} urgent replies/s for {seconds} s (seconds)",
        [
            "layout",
            "answered/s",
            "pages arrived",
            "p50",
            "p95",
            "p99",
            "max",
            "webhook p50",
            "webhook p99",
            "page after answer p99",
            "p99 gain",
            "CPU s web / dispatchers",
            "p99 <= 1 s",
            "load avg",
        ],
        rows,
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
