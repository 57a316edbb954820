"""Scale-out: `replicas` (`continuum cluster`: local and remote servers behind vLLM's router), `cluster` (its
processes, started and stopped as one), `router` (the router process and its health checks), `view` (the cluster's
merged stats and metrics: `fanout`, `stats_merge`, `metrics_merge`), `affinity` (the session-affinity hash every
layer that places programs shares)."""
