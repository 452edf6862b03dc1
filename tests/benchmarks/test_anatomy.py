"""The anatomy benchmark's parts, short: the three apps answer every request in process, ours' steps add up to
its timed app, the joiner joins every decision ours made, the bare app's server cost is measured under both
servers, and the report has a row for each part."""

from __future__ import annotations

from pathlib import Path

from benchmarks import bench_anatomy
from benchmarks.bench_anatomy import INNER_STEPS, SERVERS, SERVICES, SIZES, measure_apps, report, server_costs

ROUNDS, BATCH = 2, 10


def test_the_apps_steps_and_joiner_are_measured_and_the_report_names_every_part(tmp_path: Path) -> None:
    apps = measure_apps(ROUNDS, BATCH)  # raises unless every request was answered 200 and every decision joined
    for n in SIZES:
        figures = apps[str(n)]
        assert figures["joined"] == min(bench_anatomy.WARM_UP, 4 * BATCH) + 2 * ROUNDS * BATCH
        for name in SERVICES:
            assert len(figures["app_us"][name]) == ROUNDS
            assert all(cost > 50 for cost in figures["app_us"][name]), (n, name, figures["app_us"][name])
        steps = figures["steps_us"]
        inner = sum(steps[name] for name in INNER_STEPS)
        assert 0 < inner < steps["view"] < steps["whole app, timed"], steps
        assert figures["joiner_us"] > 0 and figures["redis_join_us"] > 0 and figures["round_trip_us"] > 0

    servers = server_costs(1, 1.0, tmp_path)
    assert set(servers) == set(SERVERS)
    assert all(len(costs) == 1 and costs[0] > 0 for costs in servers.values()), servers

    text = report(apps, servers, ROUNDS, BATCH, 1.0)
    for part in ("server", "app (WSGI call", "parse", "feature read", "decision", "bus", "rest of the view",
                 "around the view", "joiner", "Redis", "**sum**"):  # fmt: skip
        assert part in text, part
    assert text.count("\n- ") == len(SIZES) + 1  # one reading per size, and the round trip
