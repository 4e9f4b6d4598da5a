"""marketcore-coord-redis: the ``redis`` coordinator and the ``redis`` sink.

* coordinator ``redis`` — membership records in Redis, balanced (bounded-load) rendezvous
  hashing of the universe over the live nodes, a writer lease per owned symbol
  with a fencing token ``(epoch, counter)`` that survives Redis restarts;
* sink ``redis`` — writes each report through a Lua script that checks the
  writer's lease and token in the same atomic step, a whole cycle in one
  pipelined round trip.

See the README for every option and how to use both in a profile.
"""

from __future__ import annotations

from marketcore import hookimpl
from marketcore.components import RegisterCoordinator, RegisterSink

from marketcore_coord_redis.coordinator import RedisCoordinator
from marketcore_coord_redis.hrw import Assignment, assign
from marketcore_coord_redis.keys import KeyLayout
from marketcore_coord_redis.options import CoordinatorOptions, SinkOptions
from marketcore_coord_redis.sink import RedisSink, RedisUnavailable

__all__ = [
    "Assignment",
    "CoordinatorOptions",
    "KeyLayout",
    "RedisCoordinator",
    "RedisSink",
    "RedisUnavailable",
    "SinkOptions",
    "assign",
]


@hookimpl
def marketcore_register_coordinators(register: RegisterCoordinator) -> None:
    register("redis", RedisCoordinator, options=CoordinatorOptions)


@hookimpl
def marketcore_register_sinks(register: RegisterSink) -> None:
    register("redis", RedisSink, options=SinkOptions)
