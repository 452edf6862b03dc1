"""The fault suite's client: a storefront at a fixed rate that remembers every answer (``benchmarks.chaos``).

Each of ``threads`` threads holds one keep-alive connection (``tests.recommender.served_app.Client``, which
retries once on a connection the server closed) and sends ``POST /v1/score`` every ``threads / rate``
seconds with an event id ``<tag>.<thread>.<n>`` (``tag``: the scenario in force when it was sent), and for
every other decision answered 200 a reward (0.25, 0.5, 0.75 or 1.0, with a reward id) like a storefront
that retries: on 503 and on a broken connection, every ``RETRY_SECONDS``, until the reward window is over;
a 2xx is an acknowledged reward, a 4xx a refusal the client was told about. A connection error is recorded
as status 0 and the connection is opened again.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from dataclasses import dataclass

from tests.recommender.served_app import CANDIDATES_20, Client

RETRY_SECONDS = 0.2
REWARDS = (0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Answer:
    """One request's outcome: ``status`` 0 for a connection error; ``reason``: the degraded reason."""

    at: float  # monotonic time of the answer
    tag: str
    kind: str  # "score" | "reward"
    event_id: str
    status: int
    degraded: bool = False
    reason: str | None = None


@dataclass
class _PendingReward:
    event_id: str
    value: float
    give_up_at: float
    next_try: float = 0.0


class Load:
    """``threads`` client threads at ``rate`` decisions/s in all, from ``start()`` to ``stop()``."""

    def __init__(self, port: int, *, rate: float, threads: int, tag: str, reward_window: float = 4.0,
                 seed: int = 0) -> None:  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        self.interval = threads / rate
        self.tag = tag  # read by the threads at each request: set it to switch scenarios
        self.reward_window = reward_window
        self.answers: list[Answer] = []  # list.append is atomic: shared by the threads without a lock
        self.acked: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i, random.Random(seed + i)), daemon=True)
                         for i in range(threads)]  # fmt: skip

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop sending decisions; rewards still due are retried until their window is over."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.reward_window + 30)

    def decided(self) -> set[str]:
        return {a.event_id for a in self.answers if a.kind == "score" and a.status == 200}

    def healthy_since(self, since: float) -> bool:
        """A decision answered after ``since`` was not degraded (and none after it was)."""
        after = [a for a in self.answers if a.kind == "score" and a.at > since and a.status]
        return bool(after) and not after[-1].degraded and any(not a.degraded for a in after)

    def _send(self, client: Client, tag: str, kind: str, event_id: str, path: str, body: dict) -> Answer:
        try:
            response = client.post(path, body)
        except (OSError, http.client.HTTPException):
            answer = Answer(time.monotonic(), tag, kind, event_id, 0)  # the caller opens a new connection
        else:
            data = response.json() if response.status == 200 else {}
            answer = Answer(time.monotonic(), tag, kind, event_id, response.status, bool(data.get("degraded")),
                            data.get("degraded_reason"))  # fmt: skip
        self.answers.append(answer)
        return answer

    def _run(self, index: int, rng: random.Random) -> None:
        client = Client(self.url)
        pending: list[_PendingReward] = []
        n = 0
        next_due = time.monotonic() + index * self.interval / len(self._threads)
        while not self._stop.is_set() or pending:
            now = time.monotonic()
            for reward in [r for r in pending if r.next_try <= now]:
                tag = reward.event_id.split(".", 1)[0]
                body = {"event_id": reward.event_id, "reward": reward.value, "reward_id": f"r-{reward.event_id}"}
                answer = self._send(client, tag, "reward", reward.event_id, "/v1/reward", body)
                if answer.status == 0:
                    client.close()
                    client = Client(self.url)
                if 200 <= answer.status < 300:
                    self.acked[reward.event_id] = reward.value
                if answer.status not in (0, 503) or time.monotonic() > reward.give_up_at:
                    pending.remove(reward)
                else:
                    reward.next_try = time.monotonic() + RETRY_SECONDS
            if self._stop.is_set():
                time.sleep(RETRY_SECONDS / 4)
                continue
            wait = next_due - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, RETRY_SECONDS / 4))
                continue
            next_due = max(next_due + self.interval, time.monotonic())  # no burst to catch up after a stall
            n += 1
            tag = self.tag
            event_id = f"{tag}.{index}.{n}"
            user = f"user-{rng.randint(1, 10_000):05d}"
            context = {"device": rng.choice(["mobile", "desktop", "app"])}
            body = {"event_id": event_id, "user_id": user, "context": context, "candidates": CANDIDATES_20}
            answer = self._send(client, tag, "score", event_id, "/v1/score", body)
            if answer.status == 0:
                client.close()
                client = Client(self.url)
            if answer.status == 200 and n % 2 == 0:
                pending.append(_PendingReward(event_id, rng.choice(REWARDS), time.monotonic() + self.reward_window))
        client.close()
