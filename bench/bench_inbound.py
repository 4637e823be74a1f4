"""Inbound: signed Twilio webhooks (temperature replies) against the app under gunicorn.

Run from the repository root (needs ``wrk``: ``apt-get install -y wrk``)::

    .venv/bin/python -m bench.bench_inbound              # 20 s of load, 30,000 patients
    .venv/bin/python -m bench.bench_inbound --repeat 3
    .venv/bin/python -m bench.bench_inbound --quick      # seconds, for a smoke run

A SQLite file is seeded with patients on mixed regimens, each with a check-in opened
half an hour ago and waiting for a temperature. The app runs under gunicorn with the
worker and thread counts of the ``web`` line of the ``Procfile`` (what is deployed),
and its ``--worker-class`` when it names one, bound to 127.0.0.1. Each request is a
signed webhook (``X-Twilio-Signature`` over ``PUBLIC_BASE_URL`` + ``/twilio/sms``)
carrying a distinct ``MessageSid`` from a distinct patient: 90% normal temperatures
(the symptom menu comes back), 7% slightly raised ones (a re-check is scheduled), 3%
fevers (an urgent alert, an SMS queued to the on-call number, the urgent advice in the
answer).

``wrk`` (a separate process) keeps as many connections open as gunicorn has threads
in all, each sending its next request as soon as the previous answer arrives, so the
rate is what the server sustains and the latency what a webhook waits at that rate.
Afterwards the stored messages are counted: every request must have been answered
with 200 and stored once (no request repeated). Target: at least 300 replies/s with
p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import (
    PYTHON,
    REPO_ROOT,
    bench_engine,
    count_rows,
    format_table,
    headline,
    no_proxy_environment,
    phone_of,
    seed_open_checkins,
    seed_population,
    spread,
    sqlite_database,
)
from reminders.data.models import InboundMessage, SymptomReport
from tests.twilio_fake import (
    FAKE_AUTH_TOKEN,
    FROM_VALID,
    inbound_sms_params,
    twilio_signature,
)

TARGET_RATE = 300.0
TARGET_P99_MS = 100.0
PUBLIC_BASE_URL = "https://companion.example"
SCRIPT = Path(__file__).with_name("inbound.lua")


def procfile_web_settings() -> tuple[int, int, str | None]:
    """Workers, threads and worker class of the Procfile's ``web`` line (what a deployment runs).

    The worker class is None when the line names none (gunicorn's default).
    """
    text = (REPO_ROOT / "Procfile").read_text()
    line = next(raw for raw in text.splitlines() if raw.startswith("web:"))
    # A literal (--workers 2) or a default of the environment (--workers ${WEB_WORKERS:-2}).
    workers = re.search(r"--workers[ =](?:\$\{\w+:-)?(\d+)", line)
    threads = re.search(r"--threads[ =](?:\$\{\w+:-)?(\d+)", line)
    worker_class = re.search(r"--worker-class[ =](?:\$\{\w+:-)?([\w.:]+)", line)
    return (
        int(workers.group(1)) if workers else 1,
        int(threads.group(1)) if threads else 1,
        worker_class.group(1) if worker_class else None,
    )


def reply_text(rng: random.Random) -> str:
    """A temperature as patients type it: mostly normal, a few raised, a few fevers."""
    draw = rng.random()
    if draw < 0.03:
        return f"{rng.choice((38.2, 38.6, 39.1))}"
    if draw < 0.10:
        return f"{rng.choice((37.6, 37.8))}"
    return rng.choice(("36.8", "37.0", "36,9", "37.2", "temp 36.7", "36.5"))


def write_requests(path: Path, patient_ids: list[int], seed: int = 7) -> None:
    """One signed webhook per patient: ``signature<TAB>urlencoded form`` per line."""
    rng = random.Random(seed)
    url = f"{PUBLIC_BASE_URL}/twilio/sms"
    with path.open("w") as out:
        for pid in patient_ids:
            params = inbound_sms_params(
                phone_of(pid), reply_text(rng), FROM_VALID, sid=f"SM{pid:032x}"
            )
            signature = twilio_signature(url, params, FAKE_AUTH_TOKEN)
            out.write(f"{signature}\t{urlencode(params)}\n")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(
    url: str, port: int, workers: int, threads: int, worker_class: str | None = None
) -> subprocess.Popen[bytes]:
    """gunicorn serving ``backend:create_app()`` on 127.0.0.1:``port``; waits until it answers."""
    env = no_proxy_environment() | {
        "DATABASE_URL": url,
        "TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "SECRET_KEY": "bench-only-secret",
        "SMS_BACKEND": "console",
    }
    gunicorn = str(Path(PYTHON).with_name("gunicorn"))
    command = [gunicorn, "--workers", str(workers), "--threads", str(threads)]
    if worker_class is not None:
        command += ["--worker-class", worker_class]
    command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning", "backend:create_app()"]
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/twilio/sms", timeout=1)
        except urllib.error.HTTPError:
            return server  # any HTTP answer (405 for a GET) means it serves
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("gunicorn did not answer within 60 s")


def warm_up(port: int, patient_ids: list[int]) -> None:
    """A few replies from patients kept out of the measurement (imports, caches, pools)."""
    url = f"{PUBLIC_BASE_URL}/twilio/sms"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for pid in patient_ids:
        params = inbound_sms_params(phone_of(pid), "36.9", FROM_VALID, sid=f"SMwarm{pid:028x}")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/twilio/sms",
            data=urlencode(params).encode(),
            headers={"X-Twilio-Signature": twilio_signature(url, params, FAKE_AUTH_TOKEN)},
            method="POST",
        )
        with opener.open(request, timeout=10) as response:
            response.read()


def run_wrk(port: int, requests_file: Path, connections: int, seconds: int) -> dict[str, Any]:
    """wrk with the request script; its JSON summary."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    env = os.environ | {"BENCH_INBOUND_REQUESTS": str(requests_file), "BENCH_INBOUND_THREADS": "1"}
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    command += ["-s", str(SCRIPT), f"http://127.0.0.1:{port}/twilio/sms"]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(raw for raw in reversed(output.splitlines()) if raw.startswith("{"))
    return json.loads(line)


def measure(
    patients: int,
    seconds: int,
    workers: int,
    threads: int,
    connections: int,
    workdir: Path,
    worker_class: str | None = None,
) -> dict[str, Any]:
    """One seeded database, one gunicorn, one wrk run."""
    url = sqlite_database(workdir, "inbound.sqlite3")
    engine = bench_engine(url)
    now = datetime.now(UTC)
    population = seed_population(engine, patients + 50, now)
    print(f"  {population.describe()}", flush=True)
    ids = list(range(1, patients + 51))
    seed_open_checkins(engine, ids, now - timedelta(minutes=30))
    requests_file = workdir / "requests.txt"
    write_requests(requests_file, ids[50:])
    port = free_port()
    server = start_gunicorn(url, port, workers, threads, worker_class)
    try:
        warm_up(port, ids[:50])
        before = count_rows(engine, InboundMessage)
        result = run_wrk(port, requests_file, connections, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    stored = count_rows(engine, InboundMessage) - before
    result["stored"] = stored
    result["reports"] = count_rows(engine, SymptomReport)
    engine.dispose()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    workers, threads, worker_class = procfile_web_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="load duration")
    parser.add_argument("--patients", type=int, default=30_000, help="distinct replies prepared")
    parser.add_argument("--workers", type=int, default=workers, help="default: the Procfile's")
    parser.add_argument("--threads", type=int, default=threads, help="default: the Procfile's")
    parser.add_argument(
        "--worker-class", default=worker_class, help="default: the Procfile's (gunicorn's: sync)"
    )
    parser.add_argument("--connections", type=int, default=None, help="default: workers x threads")
    parser.add_argument("--quick", action="store_true", help="3 s of load, 3,000 patients")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the table and return the runs (for the smoke test)."""
    args = parse_args(argv)
    seconds, patients = (3, 3_000) if args.quick else (args.seconds, args.patients)
    connections = args.connections or args.workers * args.threads
    print(headline("Inbound"), flush=True)
    worker_class = f" --worker-class {args.worker_class}" if args.worker_class else ""
    print(
        f"gunicorn --workers {args.workers} --threads {args.threads}{worker_class}; "
        f"wrk -t1 -c{connections} -d{seconds}s; {patients:,} distinct signed replies",
        flush=True,
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-inbound-", dir=args.workdir) as tmp:
        for attempt in range(args.repeat):
            print(f"run {attempt + 1}/{args.repeat}", flush=True)
            run = measure(
                patients,
                seconds,
                args.workers,
                args.threads,
                connections,
                Path(tmp),
                args.worker_class,
            )
            run["rate"] = run["requests"] / (run["duration_us"] / 1e6)
            print(
                f"  {run['rate']:,.0f} req/s, p99 {run['p99_us'] / 1000:.1f} ms, "
                f"{run['stored']:,} stored of {run['requests']:,}",
                flush=True,
            )
            runs.append(run)
    errors = sum(r["status_errors"] + r["timeouts"] + r["connect_errors"] for r in runs)
    repeated = sum(max(r["requests"] - r["stored"], 0) for r in runs)
    rate = statistics.median(r["rate"] for r in runs)
    p99 = statistics.median(r["p99_us"] / 1000 for r in runs)
    rows = [
        [
            "replies/s",
            spread([r["rate"] for r in runs]),
            f">= {TARGET_RATE:g}",
            _met(rate >= TARGET_RATE),
        ],
        ["p50 ms", spread([r["p50_us"] / 1000 for r in runs]), "-", "-"],
        ["p95 ms", spread([r["p95_us"] / 1000 for r in runs]), "-", "-"],
        [
            "p99 ms",
            spread([r["p99_us"] / 1000 for r in runs]),
            f"< {TARGET_P99_MS:g}",
            _met(p99 < TARGET_P99_MS),
        ],
        ["max ms", spread([r["max_us"] / 1000 for r in runs]), "-", "-"],
        ["errors (non-2xx, timeouts)", errors, "0", _met(errors == 0)],
        ["requests repeated (not stored)", repeated, "0", _met(repeated == 0)],
    ]
    print(
        format_table(
            f"Inbound temperature replies, SQLite, gunicorn {args.workers}x{args.threads}"
            f"{f' {args.worker_class}' if args.worker_class else ''} "
            f"(median (min-max) over {args.repeat} run(s))",
            ["figure", "value", "target", "met"],
            rows,
        )
    )
    return runs


def _met(ok: bool) -> str:
    return "yes" if ok else "no"


if __name__ == "__main__":
    main()
