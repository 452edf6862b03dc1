"""The Redis path: the trainer is its own process (``recommender train``), the serving app (Redis feature
store and bus) follows the versions it publishes, refuses a corrupt one, follows a rollback, and a
restarted trainer learns nothing twice."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from recommender.cli.main import main
from recommender.events.log import read_events
from recommender.policy.model_store import ModelStore
from simulators.storefront import Storefront
from tests.recommender.learning.learning_config import learning_document
from tests.recommender.served_app import wait_for

RECOMMENDER = str(Path(sys.executable).with_name("recommender"))


def test_separate_trainer_publishes_and_serving_follows(serve, catalog_redis, tmp_path):
    served = serve(learning_document(tmp_path, catalog_redis.url))
    assert served.runtime.trainer is None  # with Redis, nothing learns inside the serving process
    config_path = served.runtime.config_path
    store = ModelStore(served.config.policy.model_dir)
    trainer = subprocess.Popen([RECOMMENDER, "--config", str(config_path), "train"], stderr=subprocess.PIPE, text=True)
    try:
        storefront = Storefront(served.url, seed=11, event_prefix="redis")
        first_version = served.runtime.snapshot.model_version
        outcomes = storefront.run(1500, max_seconds=60)  # any non-200 would raise
        assert len(outcomes) == 1500

        def settled() -> str | None:  # the trainer has learned and published the tail, serving follows
            before = store.current_version()
            time.sleep(1.5)
            current = store.current_version()
            return current if current == before and served.runtime.snapshot.model_version == current else None

        good = wait_for(settled, timeout=20)
        assert served.runtime.snapshot.model_version != first_version
        assert len({o.model_version for o in outcomes}) >= 2  # swapped while serving, no failed request

        # A corrupt version made current is refused; serving keeps the model it has.
        serving = served.runtime.snapshot.model_version
        bad = store.root / "versions" / "0123456789abcdef0123"
        shutil.copytree(store.root / "versions" / serving, bad)
        (bad / "model.vw").write_bytes(b"not a model")
        (store.root / "current").write_text(json.dumps({"version": bad.name}))
        time.sleep(1.0)
        assert served.runtime.snapshot.model_version == serving
        assert main(["--config", str(config_path), "policy", "rollback", good]) == 0
        assert store.current_version() == good

        storefront.run(300)
        storefront.close()
        time.sleep(1.0)  # the last rewards' window (0.3 s) and the joiner's flush
        trainer.send_signal(signal.SIGTERM)
        assert trainer.wait(timeout=30) == 0  # publishes what it learned since the last publish
    finally:
        if trainer.poll() is None:
            trainer.kill()
        trainer.wait()
    logged = read_events(served.config.join.event_log_dir)
    assert len(logged) == 1800
    final = store.version(store.current_version())
    assert final.event_range.count == 1800  # every joined event learned exactly once
    again = subprocess.run([RECOMMENDER, "--config", str(config_path), "train", "--once"], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert again.returncode == 0 and "learned 0 events" in again.stdout, again.stderr
