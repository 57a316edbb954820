"""Fitting the cost models to measurements: GEMM efficiencies against measured linear layers (`calibration`),
the H200 profile against measured step times (`h200`), the CPU profile from the live engine (`profile_cpu`,
`replay_fit`), and the live-vs-simulated check (`fidelity`)."""
