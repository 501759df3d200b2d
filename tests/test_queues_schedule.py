"""The worker's periodic schedules (alerts, mail reconcile, churn, raw-event retention, content publishing) share
two kernel pieces: one run per period across workers (a Redis key), and a tick that survives failures."""

from __future__ import annotations

import threading
import time


def test_only_the_first_worker_in_a_period_gets_to_run(app):
    from console.queues import claim_period

    with app.app_context():
        assert claim_period("test:tick", 60) is True
        assert claim_period("test:tick", 60) is False  # a second worker, same period
        assert claim_period("test:other", 60) is True
        app.extensions["redis"].delete("test:tick")  # the period ended
        assert claim_period("test:tick", 60) is True


def test_a_schedule_keeps_ticking_after_a_failure_and_runs_in_the_app(app):
    from flask import current_app

    from console.queues import run_every

    calls, ticked = [], threading.Event()

    def flaky():
        calls.append(current_app.name)
        if len(calls) == 1:
            raise ConnectionError("redis is restarting")
        ticked.set()

    run_every(app, 1, "test-schedule", flaky)
    assert ticked.wait(10), calls
    assert calls[:2] == [app.name, app.name]


def test_an_interval_of_zero_turns_the_schedule_off(app):
    from console.queues import run_every

    before = {thread.name for thread in threading.enumerate()}
    run_every(app, 0, "test-off", lambda: None)
    time.sleep(0.1)
    assert "test-off" not in {thread.name for thread in threading.enumerate()} - before
