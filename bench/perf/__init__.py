"""Speed benchmarks: `python -m bench [--quick] [--out DIR]` (or `python -m bench.perf`).

One module per job: `matmul` (the reference ceiling), `step` (training-step throughput and
MFU), `naive` (the published per-key dual block, kept to measure the batched one against),
`ray_overhead` (TorchTrainer against in-process), `loader` (the input pipeline), `e2e`
(quickstart wall time), `allocator` (glibc malloc settings), `report` (perf.json + perf.md).
"""
