"""Live runs against real servers: the trace replay, the side-by-side bench (one server per policy, or replicas
behind vLLM's router), the restart-on-death loop they share, and the demo."""
