"""Measure: build a case's workload, time it (interleaved against its baseline), take its peak memory,
fingerprint the environment, and drive a grid through all of that into a results file.

Modules: `workload` (module, input, step, backend flags), `timer` (blocks, calibration, interleaved
rounds), `memory` (peak per method), `peaks` (measured compute and bandwidth ceilings),
`environment` (fingerprint), `runner` (a grid into records), `timercheck` (agreement with
`torch.utils.benchmark.Timer`).
"""
