"""The worker's Runtime: one accessor for blueprints, and snapshot updates from the config watcher's and the
model follower's threads that build on each other instead of undoing each other."""

from __future__ import annotations

import threading
import time

import pytest

from recommender.service import create_app
from recommender.service.runtime import EXTENSION, Runtime, Snapshot, runtime
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config


def uniform_app():
    """The app on the embedded defaults, serving uniformly, without background threads."""
    return create_app(load_config(DEFAULT_CONFIG_PATH, env={}), policy=None, start_background=False,
                      run_joiner=False)  # fmt: skip


def test_blueprints_reach_the_apps_runtime_through_one_accessor():
    app = uniform_app()
    with app.test_request_context("/v1/score"):
        assert isinstance(runtime(), Runtime) and runtime() is app.extensions[EXTENSION]
    assert app.extensions[EXTENSION].watcher is None and app.extensions[EXTENSION].model_follower is None


def test_an_update_waits_for_the_one_in_progress_and_starts_from_its_result():
    rt: Runtime = uniform_app().extensions[EXTENSION]
    inside, release = threading.Event(), threading.Event()
    seen: list[Snapshot] = []

    def slow_change(snapshot: Snapshot) -> Snapshot:  # a model loading, say
        inside.set()
        assert release.wait(5)
        config = snapshot.config
        return Snapshot.of(config.model_copy(update={"service": config.service.model_copy(
            update={"queue_budget_ms": 7})}), snapshot.policy)  # fmt: skip

    def quick_change(snapshot: Snapshot) -> Snapshot:  # a settings change meanwhile
        seen.append(snapshot)
        return snapshot

    first = threading.Thread(target=rt.update, args=(slow_change,))
    first.start()
    assert inside.wait(5)
    second = threading.Thread(target=rt.update, args=(quick_change,))
    second.start()
    time.sleep(0.2)
    assert not seen  # the second waits: it must not build on the snapshot the first is replacing
    release.set()
    first.join(5)
    second.join(5)
    assert [s.config.service.queue_budget_ms for s in seen] == [7]
    assert rt.snapshot.config.service.queue_budget_ms == 7


def test_a_failed_update_changes_nothing():
    rt: Runtime = uniform_app().extensions[EXTENSION]
    before = rt.snapshot

    def failing(snapshot: Snapshot) -> Snapshot:
        raise ValueError("VW refused the exploration change")

    with pytest.raises(ValueError, match="VW refused"):
        rt.update(failing)
    assert rt.snapshot is before
