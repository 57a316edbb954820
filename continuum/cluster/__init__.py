"""Scale-out: `replicas` (`continuum cluster`: N servers behind vLLM's router), `router` (the router process),
`affinity` (the session-affinity hash every layer that places programs shares)."""
