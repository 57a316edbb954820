"""Benchmarks and checks run by hand, not tests: schedule() overhead, how well predicted work ranks programs,
LS/BE classes in the simulator, whether batching changes greedy answers."""
