"""GPU benchmark: minivae's training step on CuPy, plain and fused, against PyTorch eager and the cuBLAS floor.

    python benchmarks/bench_gpu.py            # full run: batches 128, 1024 and 8192, 7 repeats (about a minute)
    python benchmarks/bench_gpu.py --quick    # a smoke run (3 repeats, short measurements)

Model: the MNIST-shaped VAE of benchmarks/bench_cpu.py, 784-400-20 with ReLU, Bernoulli decoder from
logits, S = 1, Adam, float32, on synthetic binary data of MNIST's shape.

Contenders, all in this one process, on one GPU:
  minivae-plain  Trainer(kernels="plain"): the elementwise chains as CuPy array expressions
  minivae-fused  Trainer(kernels="fused"): each chain one hand-written CUDA kernel (minivae/kernels/*.cu)
  torch-eager    PyTorch eager on the same GPU, torch.optim.Adam with its default (foreach) update
  torch-fused    PyTorch eager, torch.optim.Adam(fused=True)
  cublas-floor   the step's 11 matrix products alone (CuPy float32, preallocated outputs)

The minivae step is the trainer's: forward, backward and Adam, with the loss computed every 10th step as in
training (reading it back waits for the GPU). PyTorch computes its loss every step: autograd starts from it.

Timing. The GPU runs asynchronously from the Python thread that queues work on it, so a host clock around
the calls would measure the queueing, not the work. Each measurement records a CUDA event, queues n steps,
records a second event and waits for it; the time between the two events covers the GPU's work and the
time it sat idle waiting for the host to launch the next kernel, which is what bounds a small model's
step. Every contender is warmed up first (NVRTC compiles the fused kernels, CuPy its elementwise kernels,
the memory pools fill, cuBLAS picks its algorithms), then n is set so that a measurement lasts about 0.2 s
and at least 20 steps. Every repeat measures each contender once, in a rotating order, and the tables
show the median over the repeats (7 by default). One process serves: a GPU has no BLAS threads that keep
spinning after a product and slow the next contender, as the CPU benchmark's workers do.

Also counted, at batch 128: the GPU operations (kernels, memsets, copies) one step queues, by capturing a
step into a CUDA graph (the CuPy contenders) or with torch.profiler (PyTorch's), where that works.

Targets: minivae-fused at least 1.5x the faster PyTorch eager configuration at batch 128, and a fused step
within 1.2x of the cuBLAS floor's time at batch 8192 (floor/fused efficiency at least 0.83).

Without CuPy or a usable GPU the script prints one line saying why and exits 0, so it can run anywhere.
--dry-run-on-cpu runs the same harness on the CPU (NumPy, PyTorch's CPU build, a host clock) to test the
script itself; its numbers say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections import Counter

import numpy as np

from minivae.backend import array_module, cuda_status

from bench_cpu import D, H, K, synthetic_data, positive_int, torch_vae, GemmFloor as CpuGemmFloor  # the same model, data and PyTorch twin as on the CPU

BATCHES = (128, 1024, 8192)
CONTENDERS = ("minivae-plain", "minivae-fused", "torch-eager", "torch-fused", "cublas-floor")
#: Every measurement runs at least this many steps, and about TARGET_S seconds (QUICK_TARGET_S with --quick).
MIN_STEPS = 20
TARGET_S, QUICK_TARGET_S = 0.2, 0.02
WARMUP_STEPS = 5
#: Batch at which the GPU operations per step are counted (the count hardly depends on the batch).
COUNT_BATCH = 128
#: The targets, each (batch, limit).
TARGET_VS_TORCH = (128, 1.5)  # minivae-fused examples/s >= 1.5 x the faster torch eager
TARGET_VS_FLOOR = (8192, 1.2)  # minivae-fused seconds/step <= 1.2 x cublas-floor's


# --------------------------------------------------------------------------- contenders


class MinivaeStep:
    """The trainer's step on a batch already in its buffers: forward, backward, Adam; the loss every 10th step."""

    def __init__(self, batch, kernels, device):
        from minivae import VAE, Trainer
        from minivae.backend import to_device

        model = VAE(D, K, (H,), likelihood="bernoulli", dtype="float32", seed=0, device=device)
        self.trainer = Trainer(model, "adam", lr=1e-3, batch_size=batch, seed=0, kernels=kernels)
        self.ws = self.trainer.workspace(batch)
        self.ws.x[...] = to_device(synthetic_data(batch), device)
        self.i = 0

    def __call__(self):
        self.i += 1
        self.trainer.step(self.ws, 1.0, need_loss=self.i % 10 == 0)

    def step_without_loss(self):
        """A step that never reads from the GPU: the only kind a CUDA graph can capture."""
        self.trainer.step(self.ws, 1.0, need_loss=False)

    def warm_up(self):
        """Both kinds of step once: the loss step's kernels (the loss sums, the reference NLL of the plain
        kernels) compile and its buffers are allocated here, not in the first measured 10 steps."""
        self.trainer.step(self.ws, 1.0, need_loss=True)
        self.trainer.step(self.ws, 1.0, need_loss=False)


class TorchStep:
    """PyTorch eager: the same model, loss and Adam, written the usual way (autograd)."""

    def __init__(self, batch, fused, device):
        import torch

        torch.manual_seed(0)
        self.torch, self.device, self.batch = torch, device, batch
        net, loss_fn = torch_vae(torch)
        net.to(device)  # in place: loss_fn uses these modules
        self.loss_fn = loss_fn
        # fused=None, not False: an explicit False also turns off the foreach update that is the default on a GPU
        self.opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True if fused else None)
        self.x = torch.from_numpy(synthetic_data(batch)).to(device)

    def __call__(self):
        noise = self.torch.randn(self.batch, K, device=self.device)
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.x, noise)
        loss.backward()
        self.opt.step()


class GemmFloor(CpuGemmFloor):
    """The 11 matrix products of the step, forward and backward, into preallocated outputs (bench_cpu.py's, on xp)."""

    def __init__(self, batch, xp):
        super().__init__(batch, H, xp)

    def step_without_loss(self):
        self()


# --------------------------------------------------------------------------- clocks


class CupyClock:
    """CUDA events on CuPy's current stream; ``stop`` waits for the second event and returns seconds."""

    def __init__(self):
        import cupy

        self.cupy = cupy
        self.begin, self.end = cupy.cuda.Event(), cupy.cuda.Event()

    def sync(self):
        self.cupy.cuda.Device().synchronize()

    def start(self):
        self.begin.record()

    def stop(self):
        self.end.record()
        self.end.synchronize()
        return self.cupy.cuda.get_elapsed_time(self.begin, self.end) / 1e3  # milliseconds -> seconds


class TorchClock:
    """CUDA events on PyTorch's current stream."""

    def __init__(self, torch):
        self.torch = torch
        self.begin = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def sync(self):
        self.torch.cuda.synchronize()

    def start(self):
        self.begin.record()

    def stop(self):
        self.end.record()
        self.end.synchronize()
        return self.begin.elapsed_time(self.end) / 1e3


class HostClock:
    """--dry-run-on-cpu only: everything runs synchronously, so a host clock measures the work."""

    def sync(self):
        pass

    def start(self):
        self.t0 = time.perf_counter()

    def stop(self):
        return time.perf_counter() - self.t0


# --------------------------------------------------------------------------- measuring


class Contender:
    """One contender at one batch size: its step, its clock, and how many steps one measurement runs."""

    def __init__(self, name, batch, device, torch, target_s):
        self.name, self.batch = name, batch
        on_gpu = device == "cuda"
        if name.startswith("minivae-"):
            self.step = MinivaeStep(batch, name[len("minivae-"):], device)
            self.clock = CupyClock() if on_gpu else HostClock()
        elif name.startswith("torch-"):
            self.step = TorchStep(batch, name == "torch-fused", device)
            self.clock = TorchClock(torch) if on_gpu else HostClock()
        elif name == "cublas-floor":
            self.step = GemmFloor(batch, array_module(device))  # cupy on the GPU
            self.clock = CupyClock() if on_gpu else HostClock()
        else:
            raise ValueError(f"unknown contender {name!r}")
        for _ in range(WARMUP_STEPS):
            self.step()
        if hasattr(self.step, "warm_up"):  # minivae: the step with the loss too (PyTorch computes it every step)
            self.step.warm_up()
        self.clock.sync()
        once = self.seconds_per_step(MIN_STEPS)
        self.n = max(MIN_STEPS, math.ceil(target_s / max(once, 1e-7)))

    def seconds_per_step(self, n=None):
        n = n or self.n
        self.clock.start()
        for _ in range(n):
            self.step()
        return self.clock.stop() / n


def interleaved(contenders, repeats):
    """Median seconds per step of each contender, measuring them in a rotating order every repeat."""
    times = {c.name: [] for c in contenders}
    for r in range(repeats if contenders else 0):
        for c in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
            times[c.name].append(c.seconds_per_step())
    return {name: statistics.median(t) for name, t in times.items()}


# --------------------------------------------------------------------------- counting GPU operations

#: CUgraphNodeType values (cuda.h) of the nodes that do work on the GPU, and of a child graph.
_KERNEL, _MEMCPY, _MEMSET, _CHILD_GRAPH = 0, 1, 2, 4


def count_cupy_operations(step) -> int:
    """Kernels, memsets and copies one step queues: the nodes of a CUDA graph captured from one step.

    ``step`` must be a fresh instance, never timed afterwards: capturing runs the Python side of a step (the
    optimizer counts it) but not its GPU work. The nodes are listed with the driver API, through ctypes.
    """
    import ctypes

    import cupy

    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        for _ in range(3):  # on this stream first: kernels compiled and loaded, memory pool blocks for this stream
            step.step_without_loss()
        stream.synchronize()
        stream.begin_capture()  # relaxed mode (CuPy's default): the memory pool may still allocate
        try:
            step.step_without_loss()
        finally:
            graph = stream.end_capture()
    if not getattr(graph, "graph", 0):
        raise RuntimeError("this CuPy does not keep the captured cudaGraph_t (Graph.graph is 0)")
    cuda = ctypes.CDLL("libcuda.so.1")

    def check(result, what):
        if result != 0:
            raise RuntimeError(f"{what} failed with CUresult {result}")

    def count(graph_handle) -> Counter:
        n = ctypes.c_size_t(0)
        check(cuda.cuGraphGetNodes(ctypes.c_void_p(graph_handle), None, ctypes.byref(n)), "cuGraphGetNodes")
        nodes = (ctypes.c_void_p * n.value)()
        check(cuda.cuGraphGetNodes(ctypes.c_void_p(graph_handle), nodes, ctypes.byref(n)), "cuGraphGetNodes")
        kinds = Counter()
        for node in nodes:
            kind = ctypes.c_int(-1)
            check(cuda.cuGraphNodeGetType(ctypes.c_void_p(node), ctypes.byref(kind)), "cuGraphNodeGetType")
            if kind.value == _CHILD_GRAPH:  # a library may capture a graph of its own: count what is inside
                child = ctypes.c_void_p()
                check(cuda.cuGraphChildGraphNodeGetGraph(ctypes.c_void_p(node), ctypes.byref(child)),
                      "cuGraphChildGraphNodeGetGraph")
                kinds += count(child.value)
            else:
                kinds[kind.value] += 1
        return kinds

    kinds = count(graph.graph)
    return kinds[_KERNEL] + kinds[_MEMCPY] + kinds[_MEMSET]


def count_torch_operations(step, torch, steps=10) -> float:
    """Kernels, memsets and copies per step, from the CUDA activity torch.profiler records over ``steps`` steps."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    on_gpu = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    if not on_gpu:
        raise RuntimeError("torch.profiler recorded no CUDA activity")
    return len(on_gpu) / steps


def count_operations(name, device, torch):
    """GPU operations per step of one contender at COUNT_BATCH, or the reason they could not be counted."""
    try:
        if name.startswith("torch-"):
            step = TorchStep(COUNT_BATCH, name == "torch-fused", device)
            for _ in range(WARMUP_STEPS):
                step()
            return f"{count_torch_operations(step, torch):.0f}"
        if name.startswith("minivae-"):
            return str(count_cupy_operations(MinivaeStep(COUNT_BATCH, name[len("minivae-"):], device)))
        return str(count_cupy_operations(GemmFloor(COUNT_BATCH, array_module(device))))
    except Exception as exc:  # optional: report why and go on
        return f"not counted ({type(exc).__name__}: {exc})"


# --------------------------------------------------------------------------- what is measured on


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"  # 12040 -> 12.4


def describe_gpu() -> str:
    import cupy

    device = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    return (f"GPU {device.id}: {name}; CuPy {cupy.__version__}, CUDA runtime "
            f"{_cuda_version(cupy.cuda.runtime.runtimeGetVersion())}, driver up to CUDA "
            f"{_cuda_version(cupy.cuda.runtime.driverGetVersion())}; CUPY_TF32={os.environ.get('CUPY_TF32', '0')}")


def find_torch(device):
    """(torch or None, a line saying which PyTorch is used or why its columns are skipped)."""
    try:
        import torch
    except ImportError as exc:
        return None, f"PyTorch: skipped, not installed ({exc})"
    if device == "cuda" and not torch.cuda.is_available():
        return None, (f"PyTorch: skipped, torch {torch.__version__} cannot use the GPU "
                      f"(torch.version.cuda = {torch.version.cuda}; a CPU-only build?)")
    if device == "cuda":
        return torch, (f"PyTorch {torch.__version__}, CUDA {torch.version.cuda}; "
                       f"TF32 matmul allowed: {torch.backends.cuda.matmul.allow_tf32}")
    return torch, f"PyTorch {torch.__version__} (CPU)"


# --------------------------------------------------------------------------- the tables


def fmt(x, spec=",.0f"):
    return "-" if x is None else format(x, spec)


def table_row(batch, t, contenders):
    """One row of the main table: examples/s of each contender, then fused/torch and floor/fused."""
    rate = {c: batch / t[(c, batch)] for c in contenders if (c, batch) in t}
    torch_rates = [rate[c] for c in ("torch-eager", "torch-fused") if c in rate]
    fused, floor = rate.get("minivae-fused"), rate.get("cublas-floor")
    vs_torch = f"{fused / max(torch_rates):.2f}x" if fused and torch_rates else "-"
    efficiency = f"{fused / floor:.2f}" if fused and floor else "-"  # = floor's time / fused's time
    rates = " ".join(f"{fmt(rate.get(c)):>14}" for c in contenders)
    return f"{batch:>6} {rates} {vs_torch:>12} {efficiency:>12}"


def target_lines(t, batches):
    """The two targets, each with what was measured; ``t`` maps (contender, batch) to seconds per step."""
    lines = []
    batch, limit = TARGET_VS_TORCH
    torch_t = [t[(c, batch)] for c in ("torch-eager", "torch-fused") if (c, batch) in t]
    if ("minivae-fused", batch) in t and torch_t:
        ratio = min(torch_t) / t[("minivae-fused", batch)]  # examples/s ratio = inverse ratio of times
        verdict = f"{ratio:.2f}x, {'met' if ratio >= limit else 'not met'}"
    else:
        verdict = "not measured" + ("" if batch in batches else f" (batch {batch} not run)")
    lines.append(f"  minivae-fused vs the faster PyTorch eager at batch {batch}: at least {limit}x;  {verdict}")
    batch, limit = TARGET_VS_FLOOR
    if ("minivae-fused", batch) in t and ("cublas-floor", batch) in t:
        ratio = t[("minivae-fused", batch)] / t[("cublas-floor", batch)]
        verdict = f"{ratio:.2f}x the floor's time, {'met' if ratio <= limit else 'not met'}"
    else:
        verdict = "not measured" + ("" if batch in batches else f" (batch {batch} not run)")
    lines.append(f"  minivae-fused step time at batch {batch}: at most {limit}x the cuBLAS floor's;  {verdict}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repeats of short measurements: a smoke run")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="interleaved repeats (default 7, or 3 with --quick)")
    parser.add_argument("--batches", type=positive_int, nargs="+", default=list(BATCHES), help="batch sizes to run")
    parser.add_argument("--dry-run-on-cpu", action="store_true",
                        help="run the harness on the CPU to test this script (measures nothing about a GPU)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    target_s = QUICK_TARGET_S if args.quick else TARGET_S

    if args.dry_run_on_cpu:
        device = "cpu"
        print("DRY RUN ON THE CPU (NumPy, PyTorch's CPU build, a host clock): tests this script, measures no GPU")
    else:
        device = "cuda"
        ok, why = cuda_status()
        if not ok:
            print(f"bench_gpu.py: nothing measured, no usable GPU: {why}")
            return 0
        print(describe_gpu())
    torch, torch_line = find_torch(device)
    print(torch_line)
    contenders = [c for c in CONTENDERS if torch is not None or not c.startswith("torch-")]

    print(f"\nTraining step, 784-400-20 ReLU, Bernoulli, S = 1, Adam, float32 (examples/s, median of {repeats} "
          f"interleaved repeats)")
    print(f"{'batch':>6} " + " ".join(f"{c:>14}" for c in contenders) + f" {'fused/torch':>12} {'floor/fused':>12}")
    t = {}  # (contender, batch) -> median seconds per step
    for batch in args.batches:
        made = []
        for name in contenders:
            try:
                made.append(Contender(name, batch, device, torch, target_s))
            except Exception as exc:  # report, and measure the others
                print(f"  {name} at batch {batch} does not run here: {type(exc).__name__}: {exc}")
        t.update({(name, batch): s for name, s in interleaved(made, repeats).items()})
        del made  # free this batch's buffers before the next
        print(table_row(batch, t, contenders))

    print("fused/torch: minivae-fused examples/s over the faster PyTorch column's; floor/fused: cublas-floor's time "
          "over minivae-fused's (1.00: the step costs its matrix products alone)")

    print("\nMilliseconds per step (median)")
    print(f"{'batch':>6} " + " ".join(f"{c:>14}" for c in contenders))
    for batch in args.batches:
        print(f"{batch:>6} " + " ".join(
            f"{fmt(t[(c, batch)] * 1e3 if (c, batch) in t else None, '.3f'):>14}" for c in contenders))

    print(f"\nGPU operations (kernels, memsets, copies) queued per step at batch {COUNT_BATCH}")
    if device == "cuda":
        for name in contenders:
            print(f"  {name:>14}  {count_operations(name, device, torch)}")
    else:
        print("  counted on a GPU only")

    print("\nTargets")
    for line in target_lines(t, args.batches):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
