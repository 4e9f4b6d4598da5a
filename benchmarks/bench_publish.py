"""Fenced publishing vs unfenced pipelined SET vs one SET at a time, one run.

    python benchmarks/bench_publish.py [the plugin benchmark's own arguments]

Runs ``plugins/coord_redis/benchmarks/bench_publish.py`` (see its ``--help``) and copies
``publish.json`` and ``publish.md`` into ``benchmarks/results/`` (see ``_coord_redis.py``).
"""

from __future__ import annotations

import sys

from _coord_redis import run

if __name__ == "__main__":
    sys.exit(run("bench_publish.py", "publish"))
