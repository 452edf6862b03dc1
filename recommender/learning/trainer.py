"""The trainer: learns from the Parquet event log and publishes model versions (docs/learning.md).

Continuous mode (``Trainer``) follows the event log the joiners write: every ``trainer.poll_seconds`` it
lists the log's files, learns the ones it has not learned yet (their events in timestamp order), and every
``trainer.model_update_interval`` seconds publishes the model to the model store together with its
**checkpoint**: which files of which log these weights have learned. Serving workers follow the store's
``current`` pointer. Batch mode (``train_batch``) learns a chosen part of a log once and publishes; it is
what ``recommender policy train`` and ``recommender train --batch`` run.

Exactly once. The unit of progress is a log file. The joiners write each joined event into exactly one
file and make a file visible by an atomic rename once it is complete (``recommender.events.joiner``); files are
never modified afterwards. The trainer learns a file's events and only then adds the file to its in-memory
checkpoint; publishing writes the model and that checkpoint into one version directory, renamed into
place atomically (``recommender.policy.model_store``). So in every published version, the weights have learned
exactly the files its checkpoint lists, each once. A (re)started trainer loads the current version and
learns only files its checkpoint does not cover: events learned after the last publish and lost in a crash
are learned again from the files, never twice into a published model, never skipped.

Learning modes (``trainer.mode``): ``online`` and ``apprentice`` learn every joined event (apprentice
events are the baseline's, logged with probability 1); ``logging_only`` pauses learning: the trainer keeps
its position, and the events are learned if the mode goes back to ``online`` or ``apprentice``.

Experiment arms with their own learning settings (``recommender.experiments.arm_learning``) are learned by
the same trainer after each of its cycles (``recommender.learning.arm_trainers``): one more trainer per arm on
the arm's namespace of the model store, learning the same log.

The checkpoint and the listing of the log are in ``recommender.learning.checkpoint``; batch mode in
``recommender.learning.batch``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recommender.errors import ExplorationChangeError, ModelStoreError, PolicyError, RecommenderError, TrainerError
from recommender.learning.arm_trainers import ArmReport, ArmTrainers
from recommender.learning.checkpoint import (
    Checkpoint,
    LogCheckpoint,
    LogFile,
    due_partitions,
    list_log_files,
    read_files,
)
from recommender.policy.model_dir import ModelVersion
from recommender.policy.model_store import ModelStore, load_serving_model
from recommender.policy.policy import Policy
from recommender.settings.app import AppConfig
from recommender.settings.policy import ExplorationSettings

log = logging.getLogger(__name__)


def _start_from(store: ModelStore, config: AppConfig) -> tuple[Policy, Checkpoint, str | None]:
    """The policy, checkpoint and version id to continue from (``load_serving_model``)."""
    policy, version = load_serving_model(store, config)
    if version is None:
        return policy, Checkpoint(), None
    return policy, Checkpoint.of_version(version), version.id


@dataclass(frozen=True)
class CycleReport:
    """One trainer cycle: events learned, events skipped as invalid, and the version published (if any)."""

    learned: int = 0
    skipped: int = 0
    published: ModelVersion | None = None
    arms: dict[tuple[str, str], ArmReport] = field(default_factory=dict)  # (experiment, arm) -> its cycle


class Trainer:
    """Follows one event log, learns, and publishes versions to one model store (see the module docstring).

    ``settings`` is called at every cycle: the trainer section (mode, interval) and the exploration apply
    as they change. Run ``run_once`` yourself, or ``start``/``stop`` a background thread. One trainer per
    model store: a second one would publish over the first (the model store stays consistent, the
    learning does not).
    """

    def __init__(
        self,
        store: ModelStore,
        log_dir: str | Path,
        settings: Callable[[], AppConfig],
        *,
        clock: Callable[[], float] = time.time,
        learn_arms: bool = True,
    ) -> None:
        """``learn_arms``: also learn the running experiment's separately learned arms (False for an arm's
        own trainer)."""
        self.store = store
        self.log_root = Path(log_dir).resolve()
        self.settings = settings
        self.clock = clock
        config = settings()
        floor = config.join.reward_wait_time + config.join.recovery_seconds
        if config.trainer.seal_after_seconds <= floor:
            raise TrainerError(
                f"trainer.seal_after_seconds ({config.trainer.seal_after_seconds:g}) must exceed "
                f"join.reward_wait_time + join.recovery_seconds ({floor:g}): joiners may still write into an "
                "hour partition that long after it"
            )
        self.policy, self.checkpoint, self.version = _start_from(store, config)
        self._skip_dates: set[str] = set()
        self._learned_since_publish = 0
        self._last_publish = clock()
        self._refused_exploration: ExplorationSettings | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.cycles = 0
        make = lambda arm_store, arm_settings: Trainer(arm_store, log_dir, arm_settings, clock=clock,  # noqa: E731
                                                       learn_arms=False)  # fmt: skip
        self.arms: ArmTrainers | None = ArmTrainers(store, settings, make) if learn_arms else None
        log.info("trainer following %s from model %s (%d files learned in open partitions)", self.log_root,
                 self.version or "(fresh)", self._log_checkpoint.file_count)  # fmt: skip

    @property
    def _log_checkpoint(self) -> LogCheckpoint:
        return self.checkpoint.for_log(self.log_root)

    @property
    def pending_events(self) -> int:
        """Events learned since the last publish (lost, and learned again from the log, if the process dies)."""
        return self._learned_since_publish

    def run_once(self, *, publish: bool | None = None) -> CycleReport:
        """Learn the files not learned yet (unless the mode is ``logging_only``), then publish when the
        interval has passed (``publish=True``: now, if anything was learned; ``False``: not now)."""
        with self._lock:
            config = self.settings()
            self._follow_current(config)
            self._apply_exploration(config)
            learned = skipped = 0
            if config.trainer.mode != "logging_only":
                files = list_log_files(self.log_root, self._log_checkpoint, self._skip_dates)
                learned, skipped = self._learn_files(files)
            due = self.clock() - self._last_publish >= config.trainer.model_update_interval
            published = None
            if self._learned_since_publish and (publish or (publish is None and due)):
                published = self._publish(config)
            arms = self.arms.run_once(config, publish=publish) if self.arms is not None else {}
            self.cycles += 1
            return CycleReport(learned, skipped, published, arms)

    def _learn_files(self, files: list[LogFile]) -> tuple[int, int]:
        if not files:
            return 0, 0
        learned = skipped = 0
        for event in read_files(files):
            try:
                learned += self.policy.learn([event])
            except PolicyError as exc:
                # A record the policy cannot learn (e.g. a feature VW refuses) stays skipped: learning it
                # again after a restart would fail the same way. Logged, never silent.
                skipped += 1
                log.warning("event not learned: %s", exc)
        self._log_checkpoint.add(files)
        self._learned_since_publish += learned
        return learned, skipped

    def _publish(self, config: AppConfig) -> ModelVersion:
        horizon = datetime.fromtimestamp(self.clock(), UTC) - timedelta(seconds=config.trainer.seal_after_seconds)
        checkpoint = self._log_checkpoint
        candidates = [LogFile(p, n, self.log_root / p / n) for p, names in checkpoint.files.items() for n in names]
        # A partition is sealed only if a fresh listing finds nothing unlearned in it.
        pending = list_log_files(self.log_root, checkpoint) if candidates else []
        checkpoint.seal(due_partitions(candidates, pending, horizon))
        # Names of files learned long enough ago become the partitions' marks: bounded metadata.
        checkpoint.advance_marks(pending, datetime.fromtimestamp(self.clock(), UTC)
                                 - timedelta(seconds=config.trainer.mark_after_seconds))  # fmt: skip
        document = self.checkpoint.as_dict()
        # renew: bytes published before (a reset's fresh model, a model that learned nothing new) are that version
        # again, now from this position in the log; a restart resumes here, not where that version first was.
        version = self.store.publish(self.policy, checkpoint=document, renew=True)
        self.version = version.id
        self._learned_since_publish = 0
        self._last_publish = self.clock()
        log.info("published model version %s (%s events learned in total)", version.id,
                 version.event_range.count if version.event_range else 0)  # fmt: skip
        try:
            self.store.prune(config.trainer.retention)
        except (ModelStoreError, OSError) as exc:  # the version is published; pruning is tried again next time
            log.error("pruning the model store %s failed: %s", self.store.root, exc)
        return version

    def _follow_current(self, config: AppConfig) -> None:
        """Someone else moved ``current`` (a rollback): continue from that version and its checkpoint."""
        current = self.store.current_version()
        if current is None or current == self.version:
            return
        log.warning("the current model is now %s (was %s): continuing from it and its checkpoint; %d events "
                    "learned since the last publish are dropped and learned again from the log", current,
                    self.version, self._learned_since_publish)  # fmt: skip
        policy, checkpoint, version = _start_from(self.store, config)
        self.policy.close()
        self.policy, self.checkpoint, self.version = policy, checkpoint, version
        self._skip_dates.clear()
        self._learned_since_publish = 0

    def _apply_exploration(self, config: AppConfig) -> None:
        wanted = config.policy.exploration
        if wanted == self.policy.config.exploration or wanted == self._refused_exploration:
            return
        try:
            policy = self.policy.with_exploration(wanted)
        except ExplorationChangeError as exc:
            self._refused_exploration = wanted
            log.error("exploration change not applied to the trained model (it keeps %s): %s",
                      self.policy.exploration_settings(), exc)  # fmt: skip
            return
        if policy is not self.policy:
            self.policy.close()
            self.policy = policy

    # ----- background thread ------------------------------------------------------------------------
    def start(self) -> None:
        """Run cycles every ``trainer.poll_seconds`` in a daemon thread until ``stop``."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self.run_forever, name="trainer", daemon=True)
            self._thread.start()

    def run_forever(self) -> None:
        """Cycle until ``stop`` is called; failures are logged and retried with backoff."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self.run_once()
                self.last_error = None
                backoff = 0.5
                self._stop.wait(self.settings().trainer.poll_seconds)
            except (RecommenderError, OSError) as exc:
                # Nothing is marked learned unless its file was learned whole: retrying is safe.
                self.last_error = str(exc)
                log.error("trainer cycle failed, retrying in %.1fs: %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception as exc:  # the loop must outlive surprises; the published model is safe
                self.last_error = str(exc)
                log.exception("trainer cycle failed unexpectedly")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def stop(self, *, publish: bool = True, timeout: float = 30.0) -> ModelVersion | None:
        """Stop the thread; with ``publish``, one last cycle learns the files not learned yet and publishes
        everything learned since the last publish (returns that version, or None)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if not publish:
            return None
        try:
            return self.run_once(publish=True).published
        except (RecommenderError, OSError) as exc:
            log.error("could not learn and publish the last events on stop: %s", exc)
            return None

    def close(self) -> None:
        if self.arms is not None:
            self.arms.close()
        self.policy.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
