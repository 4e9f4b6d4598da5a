"""Crash (SIGKILL) and graceful (SIGTERM) failover of real nodes, 20 trials each.

    python benchmarks/bench_failover.py [the plugin benchmark's own arguments]

Runs ``plugins/coord_redis/benchmarks/bench_failover.py`` (see its ``--help``) and copies
``failover.json`` and ``failover.md`` into ``benchmarks/results/`` (see ``_coord_redis.py``).
"""

from __future__ import annotations

import sys

from _coord_redis import run

if __name__ == "__main__":
    sys.exit(run("bench_failover.py", "failover"))
