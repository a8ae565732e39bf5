"""Speed benchmarks: `python -m bench [--quick] [--out DIR]` (or `python -m bench.perf`).

A module per part, each with its run (`run_part`), its perf.md section (`section`) and, where the
issue sets one, its target check (`targets`): `matmul` (1, the reference ceiling), `steps` (2,
training-step throughput and MFU), `compiled` (torch.compile on and off), `ray_overhead` (3,
TorchTrainer against in-process), `contention` (OpenMP's wait policy under a competitor), `loader`
(4, the input pipeline), `packing` (5, sweep packing), `e2e` (6, quickstart wall time), `allocator`
(7, glibc malloc settings), `accuracy` (8, bf16 against fp32 on accuracy).

Shared: `step` (one training step of a case, its FLOPs), `naive` (the published per-key dual block,
kept to measure the batched one against), `timing`, `probe` / `child` / `ray_child` (a probe in this
thread, a fresh process, a Ray worker), `environ`, `machine`, `settings`; `cli` runs the parts,
`targets` and `report` gather the verdicts and write perf.json and perf.md.
"""
