"""The shard count in force on a Redis event bus, and how it changes without losing a pending event.

``bus.shards`` decides which shard an event id belongs to (``recommender.events.redis_bus_shards``), so two
processes with different counts would look for the same event in different shards. The count in force is
therefore recorded in Redis, and every process follows the record rather than its own setting:

- ``{P}:shards`` (on the tag ``{P}``): the count in force. Absent means 1, the layout of buses older than
  shards (and of a bus never used: the first process switches it to its count at once, as below).
- ``<tag>:retired`` on each shard of a count no longer in force: "1". A decision script finding it refuses
  (``redis_scripts``: -2), so no process can put a decision where no joiner looks any more; the process
  reads the record again and retries on the layout in force.

A process whose ``bus.shards`` differs from the record keeps working on the recorded layout: its joiners
join the recorded shards, its rewards and activations go to them, but it puts no decision (``put_decision``
raises ``ShardLayoutError``, so the serving worker holds its decisions in memory, as when Redis is away)
until it switches the record to its count. It tries that at most once every ``SWITCH_CHECK_SECONDS``, and the
switch succeeds only once the recorded layout is drained: every one of its streams empty (each shard retired
by one script that finds its stream empty: no decision can slip in after the check) and no joiner batch
open (checked with the record's compare-and-set, in one script). A layout with anything pending is never
switched away from: an acknowledged reward always stays where a joiner will join it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from recommender.events.bus import BusError
from recommender.events.redis_bus_shards import NodeClients, shard_of, shard_tags

# How often a process whose bus.shards differs from the record tries to switch it, and how often a joiner
# reads the record (a process that stopped following it meets the retired markers sooner).
SWITCH_CHECK_SECONDS = 1.0

# KEYS: a shard's stream, its retired marker. 1: retired (its stream was empty), 0: decisions pending.
RETIRE = """
if redis.call('XLEN', KEYS[1]) > 0 then return 0 end
redis.call('SET', KEYS[2], '1')
return 1
"""

# KEYS: the record, the batches hash. ARGV: the count expected in force, the new count. 1 switched, 0 the record
# no longer says ARGV[1] (another process switched it), -1 a joiner batch is open (not drained).
SWITCH = """
local current = redis.call('GET', KEYS[1]) or '1'
if current ~= ARGV[1] then return 0 end
if redis.call('HLEN', KEYS[2]) > 0 then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


class ShardLayoutError(BusError):
    """The bus's shard count in force (recorded in Redis) is not this process's ``bus.shards``, and the
    recorded layout still holds pending decisions: this process may not put decisions until they are joined."""


@dataclass(frozen=True)
class Layout:
    """One shard count's keys: ``tags[s]`` the hash tag of shard s, ``streams[s]`` its decision stream."""

    count: int
    tags: tuple[str, ...]
    streams: tuple[str, ...]

    @classmethod
    def of(cls, prefix: str, stream: str, count: int) -> Layout:
        tags = shard_tags(prefix, count)
        return cls(count, tags, tuple(f"{tag}:{stream}" for tag in tags))

    def shard(self, event_id: str) -> int:
        return shard_of(event_id, self.count)

    def retired_key(self, shard: int) -> str:
        return f"{self.tags[shard]}:retired"


class LayoutRecord:
    """Reads and switches the count in force. ``clients(tag)`` gives the node clients of a tag; ``call(action,
    fn)`` runs ``fn`` turning Redis errors into BusError / BusUnavailable (the bus's own wrapper)."""

    def __init__(self, prefix: str, stream: str, clients: Callable[[str], NodeClients],
                 call: Callable[..., Any]) -> None:  # fmt: skip
        self._prefix = prefix
        self._stream = stream
        self._clients = clients
        self._call = call
        self._home = f"{{{prefix}}}"  # the tag of the record and the batches hash, whatever the count
        self.record_key = f"{self._home}:shards"
        self.batches_key = f"{self._home}:batches"
        self._layouts: dict[int, Layout] = {}

    def layout(self, count: int) -> Layout:
        found = self._layouts.get(count)
        if found is None:
            found = self._layouts[count] = Layout.of(self._prefix, self._stream, count)
        return found

    def read(self) -> Layout:
        """The layout in force (one GET)."""
        raw = self._call("reading the shard count", lambda: self._clients(self._home).joiner.get(self.record_key))
        return self.layout(int(raw) if raw is not None else 1)

    def switch(self, current: Layout, target: int) -> bool:
        """Switch the record from ``current`` to ``target`` shards if ``current`` is drained; True when the
        record says ``target`` afterwards (switched by this call or by another process)."""
        retired: list[int] = []

        def retire_all() -> bool:
            for shard, (stream, tag) in enumerate(zip(current.streams, current.tags, strict=True)):
                if not self._clients(tag).joiner.eval(RETIRE, 2, stream, current.retired_key(shard)):
                    return False
                retired.append(shard)
            return True

        def reopen(layout: Layout, shards: Sequence[int]) -> None:
            for shard in shards:
                self._clients(layout.tags[shard]).joiner.delete(layout.retired_key(shard))

        def looks_drained() -> bool:  # plain reads first: nothing is retired (and refused) while work is pending
            pairs = zip(current.tags, current.streams, strict=True)
            return not any(self._clients(tag).joiner.xlen(stream) for tag, stream in pairs)

        if not self._call("counting pending decisions", looks_drained):
            return self.read().count == target
        drained = self._call("retiring shards", retire_all)
        outcome = 0
        if drained:
            home = self._clients(self._home).joiner
            outcome = int(self._call("switching the shard count", home.eval, SWITCH, 2, self.record_key,
                                     self.batches_key, str(current.count), str(target)))  # fmt: skip
        if outcome != 1:
            # Not drained (or another process switched first): the shards this call retired take decisions
            # again, unless the record has left ``current`` meanwhile (then they stay retired).
            if self.read().count == current.count:
                self._call("reopening shards", reopen, current, retired)
            return self.read().count == target
        new = self.layout(target)
        # The target's shards may have been retired by an earlier switch away from this same count.
        self._call("opening shards", reopen, new, range(new.count))
        return True


class LayoutFollower:
    """The layout a bus works on: the record's, read at the first call, again after a retired shard refused a
    script (``stale``), and at most every ``SWITCH_CHECK_SECONDS`` by the joiner (``for_joiner``). Also
    tries the switch to ``configured`` while the record says otherwise."""

    def __init__(self, record: LayoutRecord, configured: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.record = record
        self.configured = configured
        self._clock = clock
        self._layout: Layout | None = None
        self._read_at = float("-inf")
        self._switch_tried_at = float("-inf")

    def current(self) -> Layout:
        layout = self._layout
        if layout is None:
            layout = self._refresh()
        return layout

    def _refresh(self) -> Layout:
        self._layout = layout = self.record.read()
        self._read_at = self._clock()
        return layout

    def stale(self) -> Layout:
        """A script met a retired shard: read the record again."""
        return self._refresh()

    def for_joiner(self) -> Layout:
        if self._clock() - self._read_at > SWITCH_CHECK_SECONDS:
            self._refresh()
        return self.for_put(refuse=False)

    def for_put(self, refuse: bool = True) -> Layout:
        """The layout to put decisions on: the configured one, switched to if need be; ShardLayoutError (when
        ``refuse``) while the recorded layout holds pending decisions."""
        layout = self.current()
        if layout.count == self.configured:
            return layout
        now = self._clock()
        if now - self._switch_tried_at > SWITCH_CHECK_SECONDS:
            self._switch_tried_at = now
            if self.record.switch(layout, self.configured):
                return self._refresh()
            layout = self._refresh()
        if refuse and layout.count != self.configured:
            raise ShardLayoutError(
                f"bus.shards is {self.configured} but the event bus at this prefix runs {layout.count} shard(s) "
                f"with decisions still pending; decisions are held until those are joined (docs/service.md, "
                f"'Changing bus.shards')"
            )
        return layout
