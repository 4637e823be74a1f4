"""The planning and dispatch benchmarks still run (``--quick``): they must not rot.

No timing is asserted here (the machine running the tests is shared and its speed
unknown); only that each benchmark ran end to end and produced its rows. The figures
themselves come from full runs, recorded in ``docs/benchmarks.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_dispatch, bench_paging, bench_planning, bench_planning_cpu

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bench traffic stays on 127.0.0.1 even where proxy variables are set."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_the_quick_benchmarks_run_and_report(tmp_path: Path) -> None:
    planning = bench_planning.main(["--quick", "--workdir", str(tmp_path)])
    assert {r["patients"] for r in planning} == set(bench_planning.QUICK_SIZES)
    for result in planning:
        assert result["day_rows"] > 0 and result["cold_rows"] > result["day_rows"]
        assert result["baseline_jobs"] > 0 and all(rate > 0 for rate in result["baseline"])

    dispatch = bench_dispatch.main(["--quick", "--no-postgres", "--workdir", str(tmp_path)])
    baseline, *paths = dispatch
    assert baseline["rate"] > 0
    assert [p["path"] for p in paths] == [
        "dispatch_due_messages, sqlite, in process",
        "1 × `reminders dispatch --once`, sqlite",
    ]
    for path in paths:
        assert path["rate"] > 0
        assert path["once"] == "yes"  # every message accepted exactly once


def test_the_planning_cpu_benchmark_accounts_for_both_sides(tmp_path: Path) -> None:
    """One process and the workers write the same rows; each side's CPU is counted."""
    (result,) = bench_planning_cpu.main(["--quick", "--workdir", str(tmp_path)])
    alone, workers = result["alone"], result["workers"]
    assert result["patients"] == 1_000
    assert alone["rows"] == workers["rows"] > 0
    # The one-process pass plans in this process; with workers, they do the planning
    # and their CPU (read from /proc on Linux, where CI runs) is counted too.
    assert alone["own_cpu"] > 0
    assert workers["workers_cpu"] > alone["workers_cpu"] >= 0
    assert bench_planning_cpu.ceiling(result, cores=2) > 0


def test_the_paging_benchmark_measures_every_page_once(tmp_path: Path) -> None:
    """Woken and polling-only runs on SQLite: every urgent reply answered and paged once."""
    woken, polling = bench_paging.main(["--quick", "--no-postgres", "--workdir", str(tmp_path)])
    assert (woken.setup.wakeup, polling.setup.wakeup) == (True, False)
    for outcome in (woken, polling):
        assert outcome.answered == outcome.sent > 0 and outcome.errors == 0
        assert outcome.pages == outcome.answered and outcome.duplicates == 0
        assert len(outcome.page_latencies) == outcome.pages
        assert all(latency > 0 for latency in outcome.page_latencies)
