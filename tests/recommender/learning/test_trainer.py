"""The trainer on real files and real VW: exactly once across crashes, pauses, rollbacks, sealing, batch mode, and a
live exploration change (SquareCB's gamma_scale: the same model learns on, no VW refusal)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from recommender.cli.main import main
from recommender.errors import TrainerError
from recommender.events.log import write_events
from recommender.learning.batch import train_batch
from recommender.learning.checkpoint import Checkpoint, LogCheckpoint
from recommender.learning.trainer import Trainer
from recommender.policy.model_store import open_model_store
from recommender.settings.app import AppConfig
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from recommender.settings.policy import SquareCB
from tests.recommender.sample_events import default_schema_events

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC).timestamp()  # the trainers' clock: the log's hours are recent


def config_for(tmp_path: Path, **trainer: object) -> AppConfig:
    config = load_config(DEFAULT_CONFIG_PATH)
    return config.model_copy(update={
        "policy": config.policy.model_copy(update={"model_dir": str(tmp_path / "models")}),
        "join": config.join.model_copy(update={"event_log_dir": str(tmp_path / "log")}),
        "trainer": config.trainer.model_copy(update=trainer),
    })  # fmt: skip


def write_batches(log_dir: Path, n_batches: int, per_batch: int = 40, seed: int = 0) -> list[list]:
    """Batches of events as separate files, each batch later in time than the one before."""
    batches = []
    for b in range(n_batches):
        events = default_schema_events(per_batch, seed=seed * 100 + b)
        shift = timedelta(hours=b)  # same partition layout as the joiner's: one hour each
        events = [_shifted(e, shift, f"b{seed}-{b}-") for e in events]
        write_events(events, log_dir)
        batches.append(events)
    return batches


def _shifted(event, shift, prefix):
    from dataclasses import replace

    decision = replace(event.decision, event_id=prefix + event.decision.event_id,
                       timestamp=event.decision.timestamp + shift)  # fmt: skip
    return replace(event, decision=decision, joined_at=event.joined_at + shift)


def trainer_for(config: AppConfig, clock: float = NOW) -> Trainer:
    return Trainer(open_model_store(config), config.join.event_log_dir, lambda: config, clock=lambda: clock)


def probe_pmfs(policy, seed: int = 5) -> np.ndarray:
    events = default_schema_events(20, seed=seed)
    return np.array([
        policy.predict_pmf(e.decision.user_features, e.decision.context, e.decision.candidate_features)
        for e in events
    ])  # fmt: skip


def test_a_crash_after_learning_neither_skips_nor_double_learns(tmp_path):
    config = config_for(tmp_path)
    log_dir = Path(config.join.event_log_dir)
    write_batches(log_dir, 2, seed=1)
    crashing = trainer_for(config)
    first = crashing.run_once(publish=True)
    assert first.learned == 80 and first.published is not None
    write_batches(log_dir, 2, seed=2)
    assert crashing.run_once(publish=False).learned == 80  # learned in memory, never published: "crash"
    crashing.close()

    restarted = trainer_for(config)
    assert restarted.version == first.published.id
    report = restarted.run_once(publish=True)
    assert report.learned == 80  # exactly the files after the published checkpoint
    assert report.published.event_range.count == 160
    assert restarted.run_once(publish=True) == type(report)()  # nothing new: nothing learned or published

    # The same files learned without a crash, in the same order, give the same model.
    reference_config = config_for(tmp_path / "reference")
    reference_log = Path(reference_config.join.event_log_dir)
    write_batches(reference_log, 2, seed=1)
    reference = trainer_for(reference_config)
    reference.run_once(publish=False)
    write_batches(reference_log, 2, seed=2)
    reference.run_once(publish=True)
    np.testing.assert_allclose(probe_pmfs(restarted.policy), probe_pmfs(reference.policy), atol=1e-6)
    restarted.close()
    reference.close()


def test_logging_only_pauses_and_online_resumes_where_it_stopped(tmp_path):
    config = config_for(tmp_path, mode="logging_only")
    write_batches(Path(config.join.event_log_dir), 2)
    trainer = trainer_for(config)
    assert trainer.run_once(publish=True).learned == 0
    assert open_model_store(config).current_version() is None  # nothing learned, nothing published
    online = config.model_copy(update={"trainer": config.trainer.model_copy(update={"mode": "online"})})
    trainer.settings = lambda: online
    assert trainer.run_once(publish=True).published.event_range.count == 80
    trainer.close()


def test_publishes_every_interval_and_follows_a_rollback(tmp_path):
    config = config_for(tmp_path, model_update_interval=60)
    log_dir = Path(config.join.event_log_dir)
    now = [NOW]
    trainer = Trainer(open_model_store(config), log_dir, lambda: config, clock=lambda: now[0])
    write_batches(log_dir, 1, seed=1)
    assert trainer.run_once().published is None  # learned, but the interval has not passed
    now[0] += 61
    v1 = trainer.run_once().published
    assert v1 is not None and v1.event_range.count == 40
    write_batches(log_dir, 1, seed=2)
    now[0] += 61
    v2 = trainer.run_once().published
    assert v2.event_range.count == 80 and v2.parent_version == f"{v1.id}+40"  # parent + 40 examples

    assert main(["--config", str(_write(tmp_path, config)), "policy", "rollback", v1.id]) == 0
    write_batches(log_dir, 1, seed=3)
    now[0] += 61
    v3 = trainer.run_once().published  # continued from v1: its checkpoint says seed 2's file is not learned
    assert v3.parent_version.startswith(v1.id) and v3.event_range.count == 120
    trainer.close()


def _write(tmp_path: Path, config: AppConfig) -> Path:
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True), sort_keys=False))
    return path


def test_old_partitions_are_sealed_and_late_files_in_them_ignored(tmp_path):
    config = config_for(tmp_path, seal_after_seconds=3600)
    log_dir = Path(config.join.event_log_dir)
    write_batches(log_dir, 3)  # 2024-03-01 08:00, 09:00, 10:00
    late = datetime(2024, 3, 1, 14, tzinfo=UTC).timestamp()  # 08 and 09 ended > 1 h before 14:00 - ... all three
    trainer = trainer_for(config, clock=late)
    version = trainer.run_once(publish=True).published
    checkpoint = Checkpoint.from_dict(version.checkpoint).for_log(log_dir)
    assert version.checkpoint["logs"][str(log_dir.resolve())] == {
        "files": {}, "sealed": [["date=2024-03-01/hour=08", "date=2024-03-01/hour=10"]]
    }  # fmt: skip
    assert checkpoint.is_sealed("date=2024-03-01/hour=09") and not checkpoint.is_sealed("date=2024-03-01/hour=11")
    write_events(default_schema_events(5, seed=9), log_dir)  # a late file in the sealed 08:00 partition
    assert trainer.run_once(publish=True).learned == 0
    trainer.close()


def test_checkpoint_round_trip_and_refusals(tmp_path):
    run = ["date=2024-01-01/hour=00", "date=2024-01-01/hour=01"]
    cp = LogCheckpoint({"date=2024-01-01/hour=03": ["a.parquet"]}, [run])
    cp.seal(["date=2024-01-01/hour=02", "date=2024-01-01/hour=03"])
    assert cp.as_dict() == {"files": {}, "sealed": [["date=2024-01-01/hour=00", "date=2024-01-01/hour=03"]]}
    with pytest.raises(TrainerError, match="format"):
        Checkpoint.from_dict({"format": 99, "logs": {}})
    with pytest.raises(TrainerError, match="invalid sealed run"):
        LogCheckpoint({}, [["date=2024-01-01/hour=05", "date=2024-01-01/hour=01"]])
    config = config_for(tmp_path, seal_after_seconds=300)  # below join wait (60) + recovery (300)
    with pytest.raises(TrainerError, match="must exceed join.reward_wait_time"):
        trainer_for(config)


def test_batch_mode_is_policy_train_and_a_continued_backfill_skips_learned_files(tmp_path, capsys):
    config = config_for(tmp_path)
    log_dir = Path(config.join.event_log_dir)
    write_batches(log_dir, 3)
    path = _write(tmp_path, config)
    until = "2024-03-01T10:00"
    assert main(["--config", str(path), "train", "--batch", "--until", until]) == 0
    assert "learned 80 examples (80 events x 1 pass(es)" in capsys.readouterr().out
    assert main(["--config", str(path), "policy", "train", "--log", str(log_dir), "--continue"]) == 0
    out = capsys.readouterr().out
    assert "learned 40 examples (40 events x 1 pass(es)" in out and "skipped 2 file(s)" in out
    store = open_model_store(config)
    assert store.version(store.current_version()).event_range.count == 120
    # A continuous trainer after the batch has nothing left to learn.
    assert main(["--config", str(path), "train", "--once"]) == 0
    assert "learned 0 events" in capsys.readouterr().out
    report = train_batch(config, log_dir, passes=2, make_current=False)  # a fresh model, twice over the log
    assert report.learned == 240 and report.events.count == 120 and report.files == 3


def test_train_errors_are_one_line(tmp_path, capsys):
    path = _write(tmp_path, config_for(tmp_path))
    assert main(["--config", str(path), "train", "--log", str(tmp_path)]) == 2
    assert "recommender: error: --log needs --batch" in capsys.readouterr().err
    assert main(["--config", str(path), "train", "--batch", "--log", str(tmp_path / "missing")]) == 2
    assert "recommender: error: event log" in capsys.readouterr().err
    assert main(["--config", str(path), "train", "--batch", "--since", "2024-01-02", "--until", "2024-01-01"]) == 2
    assert "--since must be before --until" in capsys.readouterr().err


def with_scale(config: AppConfig, gamma_scale: float) -> AppConfig:
    exploration = SquareCB(gamma_scale=gamma_scale)
    return config.model_copy(update={"policy": config.policy.model_copy(update={"exploration": exploration})})


def test_a_gamma_scale_change_keeps_learning_the_same_model(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.ERROR)
    base = config_for(tmp_path)
    assert isinstance(base.policy.exploration, SquareCB) and base.policy.exploration.gamma_scale == 50.0
    settings = {"config": base}
    log_dir = Path(base.join.event_log_dir)
    trainer = Trainer(open_model_store(base), log_dir, lambda: settings["config"], clock=lambda: NOW)
    write_batches(log_dir, 2, seed=1)
    first = trainer.run_once(publish=True).published
    assert first is not None

    settings["config"] = with_scale(base, 20.0)
    write_batches(log_dir, 2, seed=2)
    report = trainer.run_once(publish=True)
    assert report.learned == 80 and report.published is not None
    second = report.published
    assert second.parent_version == f"{first.id}+80"  # the same lineage: learned on, not started anew
    assert second.exploration["gamma_scale"] == 20.0 and second.model_exploration["gamma_scale"] == 50.0
    assert trainer.policy.config.exploration.gamma_scale == 20.0
    served_pmfs = probe_pmfs(trainer.policy)
    trainer.close()

    restarted = Trainer(open_model_store(base), log_dir, lambda: settings["config"], clock=lambda: NOW)
    assert restarted.version == second.id
    np.testing.assert_allclose(probe_pmfs(restarted.policy), served_pmfs, atol=1e-6)
    settings["config"] = with_scale(base, 5.0)
    write_batches(log_dir, 1, seed=3)
    third = restarted.run_once(publish=True).published
    assert third is not None and third.parent_version == f"{second.id}+40"
    assert third.model_exploration["gamma_scale"] == 50.0 and third.exploration["gamma_scale"] == 5.0
    restarted.close()
    assert not [r for r in caplog.records if "Disagreeing" in r.getMessage() or "not applied" in r.getMessage()]
