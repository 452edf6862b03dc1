"""The contextual-bandit policy: decide (score, explore, sample), learn, change exploration.

``Policy`` ties together the example builder (``recommender.policy.examples``), one VW model
(``recommender.policy.vw``), the deterministic sampler (``recommender.policy.sampling``) and a per-item cache of
built VW examples.

Decisions
    ``decide`` scores the candidates with VW's exploration reduction, which returns the full pmf; the
    chosen item is drawn from exactly that pmf with a uniform derived from the event id, so the same event
    id always gives the same choice. The ranking is the chosen item, then the others by descending
    probability (ties in the caller's order). In ``mode: ccb`` each slot gets its own item and pmf from
    VW's conditional contextual bandit (earlier slots' items get probability 0), seeded per slot from the
    event id. Excluded candidates are the caller's business: whatever is passed in is a candidate. A SquareCB
    policy served at another ``gamma_scale`` than its VW reduction's own turns VW's pmf into the served one
    first (``recommender.policy.squarecb_scale``): decisions sample from, and log, the served pmf.

Learning
    ``learn(events)`` replays logged ``JoinedEvent`` records (cost = ``cost_from_reward(reward)``, the
    logged probability of the chosen item). A ``cb`` policy learns slot 0 of multi-slot records (its pmf
    is over all candidates: a valid single-slot record); lower slots depend on position and earlier picks,
    which only a ``ccb`` policy models. Learning from the Parquet event log is the trainer's job
    (``recommender.learning``: ``train_batch`` for one pass, ``Trainer`` to follow the log).

Versions
    ``model_version`` is the content hash of the model file the policy was created, loaded or last saved
    as; after learning in memory it reads ``<version>+<n>`` (n examples learned since). Saving and loading
    with metadata (feature schema, VW arguments, events seen) is ``recommender.policy.model_store``'s job.

Thread-safety
    A VW workspace is not thread-safe. Each ``Policy`` owns one workspace and guards it, and its item
    cache, with a lock: concurrent ``decide`` calls from threads are safe and serialised on the VW part
    (features are built and the pick is sampled outside the lock). For parallelism use one Policy per
    worker *process*, created or loaded after fork (gunicorn: in the app factory or ``post_fork``, never
    in the master before forking). ``with_exploration`` returns a new Policy, with its own workspace or --
    for a change the policy applies itself, such as SquareCB's gamma_scale -- sharing this one's
    (``recommender.policy.loaded_model``: same weights, lock and cache; the workspace is closed with the last
    Policy serving it); swap the reference atomically and let the old one be garbage-collected (or ``close`` it).
"""

from __future__ import annotations

import hashlib
import tempfile
import types
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from features.config import FeatureGroup
from recommender.errors import ExampleError, ExplorationChangeError, PolicyError
from recommender.policy.event_range import EventRange
from recommender.policy.examples import ExampleBuilder, ExampleFeatures, cost_from_reward
from recommender.policy.loaded_model import LoadedModel
from recommender.policy.outcome import Outcome
from recommender.policy.sampling import ccb_seed, ranking_from, sample_from_event_id
from recommender.policy.squarecb_scale import gamma_ratio, rescale_pmf, vw_exploration
from recommender.policy.vw import ActionExample
from recommender.records import Decision, JoinedEvent, utc_now
from recommender.settings.policy import ExplorationSettings, PolicyConfig, exploration_errors, parse_exploration

# predict_pmf in ccb mode asks VW for one slot with this fixed seed: VW's sampler then neither depends
# on nor advances its random state, so scoring has no side effects.
_PMF_SEED = "pmf"


def content_id(model_bytes: bytes) -> str:
    """A model version id: the first 20 hex digits of the sha256 of the model file."""
    return hashlib.sha256(model_bytes).hexdigest()[:20]


class Policy:
    """A VW contextual-bandit policy over one feature schema. See the module docstring for the contracts."""

    def __init__(self, *, config: PolicyConfig, builder: ExampleBuilder, loaded: LoadedModel) -> None:
        # Use Policy.create or ModelStore.load rather than this constructor. ``config.exploration`` is served;
        # ``loaded.exploration`` (what VW runs with) differs from it at most in fields rescaled here.
        self.config = config
        self.builder = builder
        self._loaded = loaded
        self._model = loaded.model
        self._cache = loaded.cache
        self._lock = loaded.lock
        self._gamma_ratio = gamma_ratio(config.exploration, loaded.exploration)
        self._exploration = types.MappingProxyType(config.exploration.as_dict())
        self._closed = False

    # --- construction -------------------------------------------------------------------------------

    @classmethod
    def create(cls, policy_config: PolicyConfig, user_group: FeatureGroup, item_group: FeatureGroup) -> Policy:
        """A fresh (untrained) policy. Raises PolicyError if VW refuses the configuration."""
        loaded = LoadedModel.open(policy_config, policy_config.exploration)
        policy = cls(config=policy_config, builder=ExampleBuilder(user_group, item_group), loaded=loaded)
        loaded.base_version = content_id(policy.model_bytes())
        return policy

    @classmethod
    def from_model_file(
        cls,
        path: str | Path,
        *,
        policy_config: PolicyConfig,
        user_group: FeatureGroup,
        item_group: FeatureGroup,
        version: str,
        events_seen: EventRange | None = None,
        model_exploration: ExplorationSettings | None = None,
    ) -> Policy:
        """A policy over an existing VW model file, trained under ``policy_config``, serving its exploration.
        ``model_exploration``: what the file's VW reduction was built with (default: the same); the served one
        may differ within ``ExplorationSettings.change_refusal`` (else ExplorationChangeError), and VW is given
        the model's own value of each field the policy rescales. Prefer ``ModelStore.load``, which also checks
        the feature schema and the file's checksum."""
        served = policy_config.exploration
        own = model_exploration if model_exploration is not None else served
        if (refusal := own.change_refusal(served, mode=policy_config.mode)) is not None:
            raise ExplorationChangeError(refusal)
        vw = vw_exploration(served, own, policy_config.mode)
        loaded = LoadedModel.open(policy_config, vw, initial_model=path, version=version, events_seen=events_seen)
        return cls(config=policy_config, builder=ExampleBuilder(user_group, item_group), loaded=loaded)

    # --- properties ---------------------------------------------------------------------------------

    @property
    def model_version(self) -> str:
        """The version id of the weights in use (``<id>+<n>`` after n examples learned in memory)."""
        return self._loaded.version

    @property
    def events_seen(self) -> EventRange | None:
        """The range of logged events this model has learned from (None: none yet)."""
        return self._loaded.events_seen

    @property
    def model_exploration(self) -> ExplorationSettings:
        """The exploration settings VW's reduction runs with (the model's own, saved with it); differs from the
        served ``config.exploration`` only in fields the policy rescales (``ExplorationSettings.rescaled``)."""
        return self._loaded.exploration

    @property
    def vw_args(self) -> tuple[str, ...]:
        """The VW command line of a fresh model with this configuration."""
        return tuple(self.config.vw_args())

    @property
    def multi_slot(self) -> bool:
        return self.config.mode == "ccb"

    def exploration_settings(self) -> dict[str, Any]:
        """The exploration in force, as logged with each decision, e.g. {"algorithm": "epsilon_greedy",
        "epsilon": 0.1}."""
        return dict(self._exploration)

    def cache_info(self) -> dict[str, int]:
        """Item-cache statistics: size, capacity, hits, misses."""
        with self._lock:
            return {
                "size": len(self._cache),
                "capacity": self._cache.max_items,
                "hits": self._cache.hits,
                "misses": self._cache.misses,
            }

    # --- deciding -----------------------------------------------------------------------------------

    def _actions(self, candidate_ids: Sequence[str] | None, rows: Sequence[Mapping[str, Any]],
                 keep: bool = True) -> list[ActionExample]:  # fmt: skip
        # Called under the lock. Building an item's example is the expensive part; cached by item id and
        # validated against the row's content. ``keep=False`` (a degraded decision: default rows in place of
        # the store's) reads the cache but keeps nothing: a default row cached under an item's id would evict
        # that item's real example, and every following decision would build it again (measured: one degraded
        # decision in ten made deciding over 200 items 5x as costly).
        if candidate_ids is None:
            return [self._model.action(self._item_features(row, i)) for i, row in enumerate(rows)]
        actions = self._cache.get_many(candidate_ids, rows)
        if None not in actions:  # the usual decision: every item cached
            return actions
        for i, action in enumerate(actions):
            if action is None:
                key, row = candidate_ids[i], rows[i]
                actions[i] = action = self._model.action(self._item_features(row, key))
                if keep:
                    self._cache.put(key, row, action)
        return actions

    def _item_features(self, row: Mapping[str, Any], which: object) -> ExampleFeatures:
        try:
            return self.builder.item(row)
        except ExampleError as exc:
            raise ExampleError(f"candidate {which!r}: {exc}") from exc

    @staticmethod
    def _check_candidates(candidate_ids: Sequence[str] | None, candidate_features: Sequence[Mapping[str, Any]]) -> None:
        if len(candidate_features) == 0:
            raise PolicyError("no candidates to decide among")
        if candidate_ids is None:
            return
        if isinstance(candidate_ids, str):
            raise PolicyError("candidate_ids must be a sequence of ids, not one string")
        if len(candidate_ids) != len(candidate_features):
            raise PolicyError(f"{len(candidate_ids)} candidate ids but {len(candidate_features)} feature rows")
        if not all(isinstance(c, str) and c for c in candidate_ids):
            raise PolicyError("candidate ids must be non-empty strings")
        if len(set(candidate_ids)) != len(candidate_ids):
            raise PolicyError("candidate ids must be unique")

    def _slot_count(self, slots: int | None, k: int) -> int:
        if slots is None:
            return 1
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise PolicyError(f"slots must be a positive integer, got {slots!r}")
        if not self.multi_slot and slots != 1:
            raise PolicyError(f"slots={slots} needs a multi-slot policy (policy.mode: ccb); this one is 'cb'")
        if slots > k:
            raise PolicyError(f"slots={slots} but only {k} candidates")
        return slots

    def decide(
        self,
        *,
        event_id: str,
        user_id: str | None,
        user_features: Mapping[str, Any],
        context: Mapping[str, Any],
        candidate_ids: Sequence[str],
        candidate_features: Sequence[Mapping[str, Any]],
        slots: int | None = None,
        timestamp: datetime | None = None,
        degraded: bool = False,
        deferred: bool = False,
        inputs_checked: bool = False,
        experiment: str | None = None,
        arm: str | None = None,
        slot_names: tuple[str, ...] = (),
    ) -> Decision:
        """Score, explore and pick: a validated ``Decision`` with one pmf per slot over all candidates.

        ``candidate_ids`` and ``candidate_features`` are aligned (K >= 1, ids unique); excluded items
        must already be removed. ``slots`` (default 1) > 1 needs ``mode: ccb``. Raises PolicyError
        (ExampleError for a bad feature value, naming the candidate and feature).

        ``inputs_checked=True`` is for a caller that validated its input against these rules already (the
        scoring service does, once, at its HTTP edge), so that they are not checked twice per decision:
        ``event_id`` a valid record id, ``timestamp`` given and UTC, ids unique and aligned with the feature
        rows, ``1 <= slots <= K``, and ``slots == 1`` unless ``mode: ccb``. Input that breaks them then gives
        undefined results. Feature values are checked either way (ExampleError), and so is the outcome (the
        Decision's pmfs, choices and ranking). ``experiment``, ``arm`` and ``slot_names`` are recorded on the
        Decision as given (``recommender.records.Decision``).
        """
        if inputs_checked:
            slots = slots or 1
        else:
            self._check_candidates(candidate_ids, candidate_features)
            slots = self._slot_count(slots, len(candidate_features))
        timestamp = timestamp if timestamp is not None else utc_now()
        k = len(candidate_features)
        shared = self.builder.shared(user_features, context)
        if not self.multi_slot:
            with self._lock:
                pmf = self._model.predict_cb(shared, self._actions(candidate_ids, candidate_features, not degraded))
                version = self.model_version
            if self._gamma_ratio is not None:
                pmf = rescale_pmf(pmf, self._gamma_ratio)
            chosen: tuple[int, ...] = (sample_from_event_id(pmf, event_id),)
            pmfs = (pmf,)
        else:
            seeds = [ccb_seed(event_id, s) for s in range(slots)]
            with self._lock:
                slate = self._model.predict_ccb(
                    shared,
                    self._actions(candidate_ids, candidate_features, not degraded),
                    [self.builder.slot(s) for s in range(slots)],
                    seeds,
                )
                version = self.model_version
            pmfs = tuple(_slot_pmf(slot, k) for slot in slate)
            chosen = tuple(slot[0][0] for slot in slate)  # VW puts each slot's sampled item first
        return Decision(
            event_id=event_id,
            timestamp=timestamp,
            user_id=user_id,
            user_features=user_features,
            context=context,
            candidate_ids=tuple(candidate_ids),
            candidate_features=tuple(candidate_features),
            pmfs=tuple(tuple(p.tolist()) for p in pmfs),
            chosen=chosen,
            ranking=ranking_from(pmfs[0], chosen),
            model_version=version,
            exploration=self._exploration,
            degraded=degraded,
            deferred=deferred,
            experiment=experiment,
            arm=arm,
            slot_names=slot_names,
            inputs_checked=inputs_checked,
        )

    def predict_pmf(
        self,
        user_features: Mapping[str, Any],
        context: Mapping[str, Any],
        candidate_features: Sequence[Mapping[str, Any]],
        *,
        candidate_ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        """The (slot-0) pmf this policy would use over the candidates: shape (K,), float64, sum 1.

        No sampling and no side effects (the model's state is untouched). With ``candidate_ids`` the
        per-item example cache is used (much faster over a repeating catalog); without, examples are
        built for this call only.
        """
        self._check_candidates(candidate_ids, candidate_features)
        shared = self.builder.shared(user_features, context)
        with self._lock:
            actions = self._actions(candidate_ids, candidate_features)
            if not self.multi_slot:
                pmf = self._model.predict_cb(shared, actions)
                return pmf if self._gamma_ratio is None else rescale_pmf(pmf, self._gamma_ratio)
            slate = self._model.predict_ccb(shared, actions, [self.builder.slot(0)], [_PMF_SEED])
        return _slot_pmf(slate[0], len(candidate_features))

    # --- learning -----------------------------------------------------------------------------------

    def learn(self, events: Iterable[JoinedEvent]) -> int:
        """Learn from logged events, in order. Returns how many events were learned.

        Raises PolicyError naming the event when one cannot be turned into an example; the events
        before it have been learned (their count is in ``model_version``).
        """
        learned = 0
        first: Decision | None = None
        last: Decision | None = None
        try:
            for event in events:
                decision = event.decision
                probabilities = tuple(pmf[c] for pmf, c in zip(decision.pmfs, decision.chosen, strict=True))
                outcome = Outcome(decision.chosen, probabilities, event.rewards)
                self._learn_logged(decision.user_features, decision.context, decision.candidate_ids,
                                   decision.candidate_features, outcome, f"event {decision.event_id!r}")  # fmt: skip
                learned += 1
                # The range covering the events: the earliest and the latest decision time seen (on a tie
                # the later event in the stream, as EventRange.merged decides).
                if first is None or decision.timestamp <= first.timestamp:
                    first = decision
                if last is None or decision.timestamp >= last.timestamp:
                    last = decision
        finally:
            with self._lock:
                self._loaded.learned_since_save += learned
                if first is not None and last is not None:
                    seen = EventRange(learned, first.event_id, last.event_id, first.timestamp, last.timestamp)
                    self._loaded.events_seen = seen.merged(self._loaded.events_seen)
        return learned

    def learn_one(
        self,
        *,
        candidates: Sequence[Mapping[str, Any]],
        chosen: int | Sequence[int],
        probability: float | Sequence[float],
        reward: float | Sequence[float],
        user_features: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        candidate_ids: Sequence[str] | None = None,
    ) -> None:
        """Learn one logged outcome given as plain values, without a ``Decision`` record (docs/learning.md).

        ``candidates``: K >= 1 item rows (the item group's schema) as offered; ``candidate_ids`` (optional, K
        unique ids) lets the policy reuse its per-item examples. ``user_features``, ``context``: the shared
        features (default empty). ``chosen``: the index of the item shown (0 <= chosen < K); ``probability``:
        the logging policy's probability of showing it, in (0, 1]; ``reward``: finite, higher is better, not
        clipped. A ``ccb`` policy takes one of each per slot, as sequences (``Outcome``). Same example builder,
        cost (``cost_from_reward``) and VW call as ``learn``; counted in ``model_version``, not in
        ``events_seen`` (no event id or time). Raises PolicyError (ExampleError for a bad feature value) naming
        what is wrong; nothing is learned then.
        """
        self._check_candidates(candidate_ids, candidates)
        outcome = Outcome.of(chosen, probability, reward, k=len(candidates), multi_slot=self.multi_slot)
        shared = (user_features if user_features is not None else {}, context if context is not None else {})
        self._learn_logged(*shared, candidate_ids, candidates, outcome, "outcome")
        with self._lock:
            self._loaded.learned_since_save += 1

    def _learn_logged(
        self,
        user_features: Mapping[str, Any],
        context: Mapping[str, Any],
        candidate_ids: Sequence[str] | None,
        rows: Sequence[Mapping[str, Any]],
        outcome: Outcome,
        what: str,
    ) -> None:
        """The one learning path (``learn`` and ``learn_one``): ``outcome`` over the candidates ``rows``. A ``cb``
        policy learns slot 0 only. The items' examples come from the item cache when ``candidate_ids`` are
        given (the same VW input either way)."""
        chosen, probabilities, rewards = outcome.chosen, outcome.probabilities, outcome.rewards
        try:
            shared = self.builder.shared(user_features, context)
        except ExampleError as exc:
            raise ExampleError(f"{what}: {exc}") from exc
        with self._lock:
            try:
                actions = self._actions(candidate_ids, rows)
            except ExampleError as exc:
                raise ExampleError(f"{what}: {exc}") from exc
            if not self.multi_slot:
                self._model.learn_cb_actions(shared, actions, chosen[0], cost_from_reward(rewards[0]), probabilities[0])
            else:
                outcomes = [(c, cost_from_reward(r), p) for c, r, p in zip(chosen, rewards, probabilities, strict=True)]
                slots = [self.builder.slot(s) for s in range(len(outcomes))]
                self._model.learn_ccb_actions(shared, actions, slots, outcomes)

    # --- exploration changes ------------------------------------------------------------------------

    def with_exploration(self, new_exploration_settings: ExplorationSettings | Mapping[str, Any]) -> Policy:
        """The same weights under new exploration settings, as a new Policy (this one is unchanged).

        A change of fields the policy applies itself (``ExplorationSettings.rescaled``: SquareCB's gamma_scale
        in mode ``cb`` without elim) needs no VW reload: the new Policy shares this one's workspace
        (``LoadedModel``) and rescales VW's pmf. Any other change reloads the model in a new workspace with the
        new exploration arguments. Changes that VW cannot apply to trained weights (another algorithm family,
        or another structural field, such as the number of bags) raise ExplorationChangeError; so do invalid
        settings. Identical settings return ``self``.
        """
        try:
            new = parse_exploration(new_exploration_settings)
        except ValidationError as exc:
            raise ExplorationChangeError(exploration_errors(exc)) from exc
        old = self.config.exploration
        if new == old:
            return self
        refusal = old.change_refusal(new, mode=self.config.mode)
        if refusal is not None:
            raise ExplorationChangeError(refusal)
        try:
            config = PolicyConfig.model_validate({**self.config.model_dump(by_alias=True), "exploration": new})
        except ValidationError as exc:
            raise ExplorationChangeError(exploration_errors(exc)) from exc
        loaded = self._loaded
        vw = vw_exploration(new, loaded.exploration, config.mode)
        if vw == loaded.exploration:  # only rescaled fields changed: VW's arguments stay as they are
            return Policy(config=config, builder=self.builder, loaded=loaded.hold())
        with self._lock, tempfile.TemporaryDirectory(prefix="policy-") as tmp:
            model_file = Path(tmp) / "model.vw"
            self._model.save(model_file)
            reloaded = LoadedModel.open(config, vw, initial_model=model_file, version=loaded.base_version,
                                        events_seen=loaded.events_seen, learned_since_save=loaded.learned_since_save)
        return Policy(config=config, builder=self.builder, loaded=reloaded)

    # --- persistence helpers (used by recommender.policy.model_store) ------------------------------------

    def write_model_file(self, path: str | Path) -> None:
        """Write the VW model file (weights and learning state) to ``path``."""
        with self._lock:
            self._model.save(path)

    def model_bytes(self) -> bytes:
        """The VW model file's bytes."""
        with tempfile.TemporaryDirectory(prefix="policy-") as tmp:
            path = Path(tmp) / "model.vw"
            self.write_model_file(path)
            return path.read_bytes()

    def mark_saved(self, version: str) -> None:
        """Record that the current weights were saved as ``version``."""
        with self._lock:
            self._loaded.base_version = version
            self._loaded.learned_since_save = 0

    def close(self) -> None:
        """Release the VW workspace and the item cache (once no other Policy serves them: ``LoadedModel``).
        The policy cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            self._loaded.release()

    def __repr__(self) -> str:
        return (
            f"Policy(mode={self.config.mode!r}, version={self.model_version!r}, "
            f"exploration={dict(self._exploration)!r})"
        )


def _slot_pmf(slot: Sequence[tuple[int, float]], k: int) -> np.ndarray:
    """A CCB slot's (action, probability) list as a pmf over all K candidates (others 0), summing to 1."""
    pmf = np.zeros(k, dtype=np.float64)
    for action, probability in slot:
        pmf[action] = max(probability, 0.0)
    total = pmf.sum()
    if not np.isfinite(total) or total <= 0.0:
        raise PolicyError(f"VW returned an invalid slot distribution: {list(slot)}")
    return pmf / total
