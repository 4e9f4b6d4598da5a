"""HRW assignment of 10,000 symbols over 10 nodes; movement on join and leave.

    python benchmarks/bench_hrw.py [the plugin benchmark's own arguments]

Runs ``plugins/coord_redis/benchmarks/bench_hrw.py`` (see its ``--help``) and copies
``hrw.json`` and ``hrw.md`` into ``benchmarks/results/`` (see ``_coord_redis.py``).
"""

from __future__ import annotations

import sys

from _coord_redis import run

if __name__ == "__main__":
    sys.exit(run("bench_hrw.py", "hrw"))
