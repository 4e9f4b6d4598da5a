"""Fixtures of the coord_redis suite: real redis-server processes, hypothesis settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from marketcore.testing import RedisServer, RedisUnavailable

# redis_server, redis_cluster and redis_tls_server come from marketcore.testing.

settings.register_profile(
    "marketcore-coord-redis", deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("marketcore-coord-redis")


@pytest.fixture
def start_redis() -> Iterator[object]:
    """``start_redis(password=…, users={…}, tls=…)``: more servers, stopped after the test."""
    servers: list[RedisServer] = []

    def start(**options: object) -> RedisServer:
        try:
            server = RedisServer(**options).start()
        except RedisUnavailable as error:
            pytest.skip(str(error))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
