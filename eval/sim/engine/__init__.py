"""The simulator's entities and event loop: vLLM's real scheduler and KV cache manager built in-process
(`vllm_offline`), one engine's step (`core`), the one event loop for one engine, replicas or lockstep ranks
(`loop`), routers (`routing`), programs and turns (`entities`), the virtual clock, and a stand-in for the host-tier
copy worker (`transfers`)."""
