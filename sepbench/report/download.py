"""The data behind the page, as files a reader can download: every merged record as one CSV row, and
a column dictionary that says what each column means and in which unit. Per-block times and the
stage attribution stay in the results files (lists and JSON do not fit a flat table; `file` names
where they are).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

RECORDS = "records.csv"
DICTIONARY = "columns.csv"

# column → (unit, meaning). The order is the CSV's.
COLUMNS: dict[str, tuple[str, str]] = {
    "env": ("", "environment: machine · device · PyTorch · intra-op threads (the unit a number belongs to)"),
    "file": ("", "results file the record comes from (its name)"),
    "run_id": ("", "run that measured it"),
    "run_started": ("UTC", "when that run started"),
    "run_grid": ("", "grid or preset of the run"),
    "status": ("", "ok, or why the case was not measured (skipped, failed)"),
    "reason": ("", "the reason, when not ok"),
    "variant": ("", "layer variant (standard, depthwise_separable, …) or network"),
    "label": ("", "variant with its parameters, e.g. grouped(g=4)"),
    "family": ("", "layer or network"),
    "geometry": ("", "short name of the geometry and setting"),
    "setting": ("", "batch, dtype, TF32, mode, layout and autotuning the case ran under"),
    "device": ("", "cpu or cuda"),
    "mode": ("", "inference (forward, no grad) or train (forward + backward + grad accumulation)"),
    "c_in": ("channels", "input channels"),
    "c_out": ("channels", "output channels"),
    "size": ("pixels", "input height = width (networks: resolution ρ)"),
    "kernel": ("pixels", "kernel size k"),
    "stride": ("", "stride"),
    "dilation": ("", "dilation"),
    "padding": ("", "same or valid"),
    "bias": ("", "whether the convolutions carry a bias"),
    "act": ("", "activation after the layer"),
    "groups": ("", "groups of the grouped variant"),
    "expansion": ("", "expansion t of the inverted residual"),
    "alpha": ("", "width multiplier α of a network"),
    "batch": ("", "batch size"),
    "dtype": ("", "tensor dtype"),
    "tf32": ("", "CUDA float32: TF32 allowed in matmul and cuDNN (empty on the CPU)"),
    "memory_format": ("", "contiguous (NCHW) or channels_last (NHWC)"),
    "cudnn_benchmark": ("", "CUDA: cudnn.benchmark autotuning on (empty on the CPU)"),
    "threads": ("", "intra-op threads the case was timed with"),
    "env_machine": ("", "machine name (SEPBENCH_MACHINE or the host's), then @ and the host's first 6 characters "
                        "where the run recorded one"),
    "env_host": ("", "this host, hashed (machine id and boot id; empty in older runs)"),
    "env_torch": ("", "PyTorch version"),
    "env_cpu": ("", "CPU model"),
    "env_gpu": ("", "GPU model"),
    "env_onednn": ("", "oneDNN version"),
    "env_cudnn": ("", "cuDNN version"),
    "env_heap": ("", "glibc allocator policy of the measuring process"),
    "env_settings": ("", "environment variables that change what a conv runs (DNNL_*, OMP_*, …), as KEY=VALUE"),
    "env_sepbench_commit": ("", "sepbench commit that measured it"),
    "backend": ("", "kernel backend the layer ran on, as detected"),
    "theory_params": ("parameters", "parameters of the layer"),
    "theory_macs": ("MACs", "multiply-accumulates of one forward pass"),
    "theory_flops_2mac": ("FLOPs", "forward FLOPs, 2 · MACs (FlopCounterMode's convention), bias excluded"),
    "theory_flops_step": ("FLOPs", "FLOPs of one timed step (train: 3 × forward)"),
    "theory_bytes_step": ("bytes", "minimum memory traffic of one timed step"),
    "theory_intensity": ("FLOP/byte", "arithmetic intensity: theory_flops_step / theory_bytes_step"),
    "theory_activation_bytes": ("bytes", "activation bytes of one step"),
    "theory_weight_bytes": ("bytes", "weight bytes"),
    "theory_speedup": ("×", "theoretical speedup: FLOP ratio baseline / variant"),
    "theory_param_ratio": ("×", "parameters, variant / baseline"),
    "theory_roofline_s": ("s", "roofline lower bound of one step under the measured ceilings"),
    "theory_roofline_speedup": ("×", "ratio of roofline bounds, baseline / variant"),
    "ceiling": ("", "measured compute ceiling the roofline bound used (float32, tf32, bfloat16, …)"),
    "peak_flops": ("FLOP/s", "that ceiling, measured by the run"),
    "peak_bandwidth": ("bytes/s", "copy bandwidth measured by the run"),
    "timing_median_s": ("s", "median time of one step over the timed blocks"),
    "timing_q1_s": ("s", "first quartile of the block times"),
    "timing_q3_s": ("s", "third quartile of the block times"),
    "timing_number": ("steps", "steps per timed block"),
    "timing_unstable": ("", "raw block times spread beyond the run's threshold (drift)"),
    "timing_retaken": ("blocks", "blocks of the case's group timed again because they lost the CPU"),
    "timing_retaken_reasons": ("", "why, by count: wait (run queue), steal (hypervisor), cpu (CPU share)"),
    "timing_sittings": ("rounds", "rounds in each sitting (fresh tensors each, spread over the run); empty in "
                                  "older runs: one sitting"),
    "timing_stop": ("", "why the group's rounds ended: target reached, budget spent, or rounds"),
    "run_thread_policy": ("", "how the run chose its intra-op thread count"),
    "run_other_cores_start": ("cores", "other processes' CPU use as the run began"),
    "run_other_cores_end": ("cores", "and as it ended"),
    "run_retaken_share": ("", "blocks of the run timed again, over blocks kept"),
    "run_probe_drift": ("×", "the reference probe over the run, 90th over 10th percentile"),
    "run_contended": ("", "the run was taken on a contended machine (busy at an end, or > 5 % re-taken)"),
    "realized_speedup": ("×", "realized speedup: median over sittings of baseline median / variant median "
                              "(realized_estimator empty: the geometric mean; older runs: one sitting)"),
    "realized_low": ("×", "lower end of its 95 % interval (order statistics over sittings, widened by "
                          "realized_between_run; realized_estimator empty: Student t; older runs: bootstrap over "
                          "rounds)"),
    "realized_high": ("×", "upper end of its 95 % interval"),
    "realized_efficiency": ("", "realized / theoretical speedup"),
    "realized_spread": ("", "IQR / median of the per-round speedups"),
    "realized_unstable": ("", "the interval did not reach the run's target within its budget (older runs: "
                               "realized_spread above the run's threshold after one re-measure)"),
    "realized_half_width": ("", "the 95 % interval's half-width relative to the speedup"),
    "realized_reason": ("", "why unstable: contended, drifting, bimodal, sittings or noisy (timer.diagnose)"),
    "realized_estimator": ("", "how the sittings were summed up: median (empty: geometric mean, older runs)"),
    "realized_between_run": ("log", "τ, the between-run standard deviation added to the interval in quadrature "
                                    "(empty: the interval is over sittings only, older runs)"),
    "achieved_flops": ("FLOP/s", "theory_flops_step / timing_median_s"),
    "roofline_share": ("", "share of the roofline bound reached: theory_roofline_s / timing_median_s"),
    "measured_memory_bytes": ("bytes", "measured peak memory rise of one step (method in measured_memory_method)"),
    "measured_memory_method": ("", "how the memory was measured"),
    "memory_nvml_process_bytes": ("bytes", "CUDA: this process's device memory by NVML"),
    "theory_memory_saving": ("×", "theoretical memory, baseline / variant"),
    "measured_memory_saving": ("×", "measured memory rise, baseline / variant"),
    "attribution_method": ("", "how the step's time was put into stages"),
    "attribution_bottleneck": ("", "stage whose time share most exceeds its FLOP share"),
    "attribution_bottleneck_share": ("", "that stage's share of the step's time"),
    "attribution_bottleneck_flop_share": ("", "that stage's share of the step's FLOPs"),
    "attribution_busy_s": ("s", "CUDA: time a kernel ran during the profiled step"),
    "attribution_wall_s": ("s", "wall time of the profiled step"),
}


def write(df: pd.DataFrame, folder: Path) -> tuple[Path, Path]:
    """records.csv (the columns of COLUMNS that the records have) and columns.csv (its dictionary)."""
    folder.mkdir(parents=True, exist_ok=True)
    present = [c for c in COLUMNS if c in df]
    records, dictionary = folder / RECORDS, folder / DICTIONARY
    df.assign(file=df["file"].map(lambda f: Path(f).name))[present].to_csv(records, index=False, float_format="%.6g")
    pd.DataFrame([{"column": c, "unit": COLUMNS[c][0], "meaning": COLUMNS[c][1]} for c in present]) \
        .to_csv(dictionary, index=False)
    return records, dictionary
