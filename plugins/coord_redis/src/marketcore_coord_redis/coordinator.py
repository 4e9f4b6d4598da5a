"""Coordinator ``redis``: membership, bounded-load HRW assignment, leases with fencing tokens.

Two loops run while the node runs, each owned by :meth:`RedisCoordinator.run`:

* **members** — refreshes this node's membership record about every second and
  looks the members up every ``watch_ms``, or at once when a peer announces a
  join or leave on the fleet channel; a change of the live set triggers a
  rebalance at once.
* **notices** — listens on the fleet channel (pub/sub) and wakes the members
  loop. Only a hint: a lost notice costs at most one ``watch_ms``.
* **leases** — the only place that changes leases: recomputes the assignment
  (on a membership change or every ``rebalance_ms``), releases symbols
  assigned elsewhere once held ``min_hold_ms``, renews held leases every
  third of the TTL, acquires symbols assigned here (retrying every
  ``acquire_retry_ms`` while another node still holds them), and reads back
  acquires whose reply was lost.

What the node is told (``ownership.acquired`` / ``released``) is kept apart
from what is proven in Redis: when Redis is unreachable the node keeps its
symbols and their books warm, the fencing sink writes nothing (it cannot prove
a lease), and when Redis answers again each lease is renewed, or acquired
anew (a new token for the same warm book), or found lost and released.

Cancellation is the graceful leave: every lease is released first, then the
membership record is deleted and the leave announced, then the node is told —
peers look the members up on the notice and find the leases already free, so
they take over within a few round trips instead of a TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping

from marketcore.components import Ownership, WriterToken

from marketcore_coord_redis.hrw import Assignment, assign
from marketcore_coord_redis.keys import KeyLayout
from marketcore_coord_redis.leases import (
    NO_LEASE,
    OTHER_HOLDER,
    RENEWED,
    TOKEN_MOVED,
    Acquired,
    Lease,
    LeaseClient,
)
from marketcore_coord_redis.membership import Member, Membership, this_process
from marketcore_coord_redis.options import CoordinatorOptions, check_secret_source
from marketcore_coord_redis.stats import Backoff, CoordinatorStats
from marketcore_coord_redis.transport import (
    TRANSIENT,
    UNKNOWN,
    BatchInterrupted,
    Client,
    close_client,
    open_client,
    raise_if_cancelled,
    redacted_url,
)

__all__ = ["RedisCoordinator"]

log = logging.getLogger("marketcore.coord_redis")

LEAVE_TIMEOUT_S = 2.0


class RedisCoordinator:
    """Shares the universe among the live nodes; holds a fenced lease per owned symbol."""

    name = "redis"

    def __init__(self, options: CoordinatorOptions) -> None:
        check_secret_source(options)
        self.options = options
        self.layout = KeyLayout.of(options)
        self.stats = CoordinatorStats()
        self.assignment: Assignment | None = None
        """The latest assignment (for tests and operators)."""
        # What the node was told it writes, and with which token. Kept across a
        # restart of ``run`` (the supervisor restarts it after a crash), so the
        # leases of warm symbols are re-proved instead of forgotten.
        self._granted: dict[str, WriterToken] = {}
        self._leases: dict[str, Lease] = {}
        self._wake: asyncio.Event | None = None

    # -- the node's side -------------------------------------------------------------

    def refused(self, symbol: str) -> None:
        """A sink refused a write: another node holds the lease. Forget the symbol."""
        self.stats.lease_conflicts += 1
        self._granted.pop(symbol, None)
        self._leases.pop(symbol, None)
        if self._wake is not None:
            self._wake.set()

    def held(self) -> dict[str, WriterToken]:
        """Symbols with a lease held now, and their tokens (for tests and operators)."""
        now = time.monotonic()
        return {s: lease.token for s, lease in self._leases.items() if lease.proven(now)}

    # -- running ---------------------------------------------------------------------

    async def run(self, ownership: Ownership) -> None:
        """Coordinate until cancelled; then leave the fleet gracefully."""
        client = await open_client(self.options, self.options.password)
        run = _Run(self, ownership, client)
        self._wake = run.wake
        try:
            await run.serve()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the leave's own awaits must run; the cancel goes on below
            await run.leave()
            raise
        finally:
            self._wake = None
            await close_client(client)


class _Run:
    """One run of the coordinator: the two loops and their shared view."""

    def __init__(self, owner: RedisCoordinator, ownership: Ownership, client: Client) -> None:
        self.owner = owner
        self.options = owner.options
        self.stats = owner.stats
        self.ownership = ownership
        self.granted = owner._granted
        self.leases = owner._leases
        self.node_id = ownership.node_id
        self.universe = tuple(ownership.universe)
        self.me = this_process(self.node_id, host=self.options.host,
                               metrics_url=self.options.metrics_url)
        self.wake = asyncio.Event()
        self.look_up = asyncio.Event()
        """Set by a peer's join or leave notice: look the members up now."""
        self.client = client
        self.ttl_s = self.options.lease_ttl_ms / 1000
        self.renew_every_s = self.ttl_s / 3
        self.members: Mapping[str, Member] = {}
        self.members_known = False
        self.membership_changed = False
        self.desired: frozenset[str] = frozenset()
        self.next_rebalance = 0.0
        self.next_try: dict[str, float] = {}
        self.unknown: dict[str, float] = {}
        """Symbols whose acquire reply was lost, with the send time."""
        self.max_epoch = owner.stats.epoch
        self.lease_backoff = Backoff()
        self.member_backoff = Backoff()
        self.lease_client = LeaseClient(client, owner.layout, node_id=self.node_id,
                                        instance=self.me.instance,
                                        ttl_ms=self.options.lease_ttl_ms)
        self.membership = Membership(client, owner.layout, self.me,
                                     node_ttl_ms=self.options.node_ttl_ms,
                                     member_timeout_ms=self.options.member_timeout_ms)

    # -- lifecycle ------------------------------------------------------------------

    async def serve(self) -> None:
        self._sync_node()
        log.info("joining the fleet at %s as %s", redacted_url(self.options.url), self.node_id,
                 extra={"component": "coordinator", "node_id": self.node_id})
        async with asyncio.TaskGroup() as group:
            group.create_task(self._members_loop())
            group.create_task(self._leases_loop())
            group.create_task(self._notices_loop())

    async def leave(self) -> None:
        """The leases first, then the membership record and the notice, then tell the node.

        In this order a peer woken by the notice finds the leases free and acquires
        them on its first try. Never raises.
        """
        leases = list(self.leases.values())
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT_S):
                if leases:
                    await self.lease_client.release(leases)
                await self.membership.leave()
        except TRANSIENT as error:
            log.warning("could not leave the fleet cleanly (%s); peers take over when the "
                        "leases expire", error, extra=self._extra())
        self.stats.releases += len(leases)
        for symbol in sorted(self.granted):
            self.ownership.released(symbol, "shutdown")
        self.granted.clear()
        self.leases.clear()
        self.stats.symbols_held = 0

    # -- members --------------------------------------------------------------------

    async def _members_loop(self) -> None:
        next_beat = 0.0
        beat_s = self.options.heartbeat_ms / 1000
        announced = False
        while True:
            raise_if_cancelled()
            now = time.monotonic()
            try:
                if now >= next_beat:
                    await self.membership.heartbeat(tuple(sorted(self.leases)))
                    next_beat = now + beat_s * random.uniform(0.9, 1.1)
                    if not announced:  # peers rebalance at once instead of at their poll
                        await self.membership.announce("join")
                        announced = True
                members = await self.membership.members()
            except TRANSIENT as error:
                self._failed(error, self.member_backoff)
                await asyncio.sleep(self.member_backoff.delay())
                continue
            self.member_backoff.reset()
            if set(members) != set(self.members) or not self.members_known:
                self.membership_changed = True
                self.wake.set()
            self.members = members
            self.members_known = True
            self.stats.members = len(set(members) | {self.node_id})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.watch_ms / 1000):
                    await self.look_up.wait()
            self.look_up.clear()

    async def _notices_loop(self) -> None:
        """Wake the members loop on a peer's join or leave notice (pub/sub on the channel).

        Failures only cost latency (the members loop polls anyway): resubscribe
        with backoff, never crash the coordinator.
        """
        backoff = Backoff()
        own = {f"{event} {self.node_id}".encode() for event in ("join", "leave")}
        while True:
            raise_if_cancelled()
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            except (AttributeError, NotImplementedError):
                return  # a client without pub/sub: the members loop's polling suffices
            try:
                await pubsub.subscribe(self.owner.layout.channel)
                backoff.reset()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message" \
                            and message.get("data") not in own:
                        self.stats.notices += 1
                        self.look_up.set()
            except TRANSIENT:
                self.stats.redis_errors += 1
            finally:
                with contextlib.suppress(*TRANSIENT, RuntimeError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff.delay())

    # -- leases ---------------------------------------------------------------------

    async def _leases_loop(self) -> None:
        while True:
            raise_if_cancelled()
            now = time.monotonic()
            try:
                if self.members_known and (self.membership_changed or now >= self.next_rebalance):
                    await self._rebalance(now)
                await self._read_back()
                await self._release_unwanted(time.monotonic())
                await self._renew(time.monotonic())
                await self._acquire(time.monotonic())
            except TRANSIENT as error:
                self._failed(error, self.lease_backoff)
                await asyncio.sleep(self.lease_backoff.delay())
                continue
            if self.lease_backoff.failing:
                log.info("Redis answers again; leases re-proved", extra=self._extra())
            self.lease_backoff.reset()
            self.stats.symbols_held = len(self.leases)
            await self._sleep(self._next_deadline(time.monotonic()))

    async def _rebalance(self, now: float) -> None:
        nodes = set(self.members) | {self.node_id}
        # Who holds what is read from the lease keys themselves: every node reading at
        # the same moment gets the same owners, so all compute the same assignment
        # (membership records would lag by up to a heartbeat).
        owners = await self.lease_client.holders(self.universe)
        self.membership_changed = False  # only once read: a failed read retries at once
        self.next_rebalance = now + self.options.rebalance_ms / 1000
        for symbol in (*self.granted, *self.leases):  # warm here, being re-proved
            owners.setdefault(symbol, self.node_id)
        self.owner.assignment = assign(self.universe, nodes, owners,
                                       load_factor=self.options.load_factor)
        desired = self.owner.assignment.symbols_of(self.node_id)
        if desired != self.desired:
            self.stats.rebalances += 1
            self.desired = desired
        self.stats.symbols_assigned = len(desired)

    async def _read_back(self) -> None:
        """Settle acquires whose reply was lost: read the lease instead of resending."""
        if not self.unknown:
            return
        symbols = sorted(self.unknown)
        found = await self.lease_client.inspect(symbols)
        for symbol, inspection in zip(symbols, found, strict=True):
            if inspection is None:
                continue  # still unknown; read again on the next pass
            sent_at = self.unknown.pop(symbol)
            self.stats.read_backs += 1
            if self.lease_client.mine(inspection):
                assert inspection.token is not None
                self._won(symbol, inspection.token, sent_at)
            else:
                self.next_try[symbol] = time.monotonic() + self.options.acquire_retry_ms / 1000

    async def _release_unwanted(self, now: float) -> None:
        if not self.members_known:
            return
        hold_s = self.options.min_hold_ms / 1000
        leaving = [lease for symbol, lease in self.leases.items()
                   if symbol not in self.desired and now - lease.acquired_at >= hold_s]
        unproven = [s for s in self.granted if s not in self.desired and s not in self.leases
                    and s not in self.unknown]
        if leaving:
            try:
                await self.lease_client.release(leaving)
            finally:  # released or not, these leases are no longer renewed
                for lease in leaving:
                    self.leases.pop(lease.symbol, None)
                    self.stats.releases += 1
                    self._revoke(lease.symbol, "reassigned")
        for symbol in unproven:
            self._revoke(symbol, "reassigned")

    async def _renew(self, now: float) -> None:
        due = [lease for lease in self.leases.values()
               if now >= lease.sent_at + self.renew_every_s]
        if not due:
            return
        sent_at = time.monotonic()
        try:
            replies = await self.lease_client.renew(due)
        except BatchInterrupted as error:
            self._renewed(due, error.replies, sent_at)
            raise
        self._renewed(due, replies, sent_at)

    def _renewed(self, due: list[Lease], replies: list[object], sent_at: float) -> None:
        for lease, reply in zip(due, replies, strict=True):
            if reply == RENEWED:
                lease.sent_at = sent_at
                lease.valid_until = self.lease_client.valid_until(sent_at)
            elif reply == OTHER_HOLDER:
                self.leases.pop(lease.symbol, None)
                self.stats.losses += 1
                self._revoke(lease.symbol, "lease lost")
            elif reply in (NO_LEASE, TOKEN_MOVED):
                # Expired or lost in a Redis restart: acquire again at once; the node
                # keeps the symbol (warm) and gets the new token.
                self.leases.pop(lease.symbol, None)
                self.next_try[lease.symbol] = 0.0
            elif reply is not UNKNOWN:
                log.warning("renewing %s failed: %s", lease.symbol, reply,
                            extra=self._extra(lease.symbol))

    async def _acquire(self, now: float) -> None:
        wanted = [s for s in sorted(self.desired)
                  if s not in self.leases and s not in self.unknown
                  and self.next_try.get(s, 0.0) <= now]
        if not wanted:
            return
        sent_at = time.monotonic()
        try:
            outcomes = await self.lease_client.acquire(wanted, min_epoch=self.max_epoch)
        except BatchInterrupted as error:
            outcomes = [LeaseClient.outcome(s, r)
                        for s, r in zip(wanted, error.replies, strict=True)]
            self._acquired(outcomes, sent_at)
            raise
        self._acquired(outcomes, sent_at)

    def _acquired(self, outcomes: list[Acquired], sent_at: float) -> None:
        now = time.monotonic()
        retry_s = self.options.acquire_retry_ms / 1000
        for outcome in outcomes:
            symbol = outcome.symbol
            self._saw_epoch(outcome.epoch)
            if outcome.status == "ok":
                assert outcome.token is not None
                self._won(symbol, outcome.token, sent_at)
            elif outcome.status == "unknown":
                self.unknown[symbol] = sent_at
            elif outcome.status == "wait":
                self.next_try[symbol] = now + outcome.retry_ms / 1000
            else:
                if outcome.status == "held" and symbol in self.granted \
                        and outcome.holder != self.node_id:
                    self.stats.losses += 1
                    self._revoke(symbol, "lease lost")
                elif outcome.status == "error":
                    log.warning("acquiring %s failed: %s", symbol, outcome.holder,
                                extra=self._extra(symbol))
                wait_s = retry_s
                if outcome.status == "held" and 0 <= outcome.retry_ms < retry_s * 1000:
                    wait_s = outcome.retry_ms / 1000 + 0.005  # it expires sooner than that
                self.next_try[symbol] = now + wait_s

    # -- helpers --------------------------------------------------------------------

    def _won(self, symbol: str, token: WriterToken, sent_at: float) -> None:
        """A lease was acquired: record it and tell the node when the token is new."""
        previous = self.leases.get(symbol)
        self.leases[symbol] = Lease(
            symbol, token, acquired_at=previous.acquired_at if previous else sent_at,
            sent_at=sent_at, valid_until=self.lease_client.valid_until(sent_at))
        self.next_try.pop(symbol, None)
        self._saw_epoch(token.epoch)
        if self.granted.get(symbol) != token:
            self.stats.acquisitions += 1
            self._grant(symbol, token)

    def _grant(self, symbol: str, token: WriterToken) -> None:
        """Tell the node; remember it only once the node took it (its hooks may raise)."""
        self.ownership.acquired(symbol, token)
        self.granted[symbol] = token

    def _sync_node(self) -> None:
        """After a restart of ``run``: tell the node about leases it was not told of."""
        for symbol, lease in sorted(self.leases.items()):
            if self.granted.get(symbol) != lease.token:
                self._grant(symbol, lease.token)

    def _revoke(self, symbol: str, reason: str) -> None:
        if self.granted.pop(symbol, None) is not None:
            self.ownership.released(symbol, reason)

    def _saw_epoch(self, epoch: int) -> None:
        if epoch > self.max_epoch:
            self.max_epoch = epoch
            self.stats.epoch = epoch

    def _failed(self, error: BaseException, backoff: Backoff) -> None:
        self.stats.redis_errors += 1
        if not backoff.failing:
            self.stats.outages += 1
            log.warning("Redis unreachable (%s): keeping %d symbols warm; no fenced write "
                        "until their leases are re-proved", type(error).__name__,
                        len(self.granted), extra=self._extra())

    def _next_deadline(self, now: float) -> float:
        deadlines = [now + 1.0]
        if self.leases:
            deadlines.append(min(lease.sent_at for lease in self.leases.values())
                             + self.renew_every_s)
        pending = [self.next_try.get(s, 0.0) for s in self.desired if s not in self.leases]
        if pending:
            deadlines.append(min(pending))
        if self.members_known:
            deadlines.append(self.next_rebalance)
        hold_s = self.options.min_hold_ms / 1000
        releasing = [lease.acquired_at + hold_s for s, lease in self.leases.items()
                     if s not in self.desired]
        if releasing:
            deadlines.append(min(releasing))
        return min(deadlines)

    async def _sleep(self, until: float) -> None:
        delay = until - time.monotonic()
        if delay > 0:
            try:
                async with asyncio.timeout(delay):
                    await self.wake.wait()
            except TimeoutError:
                pass
        self.wake.clear()

    def _extra(self, symbol: str | None = None) -> dict[str, object]:
        extra: dict[str, object] = {"component": "coordinator", "node_id": self.node_id}
        if symbol is not None:
            extra["symbol"] = symbol
        return extra
