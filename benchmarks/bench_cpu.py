"""CPU benchmark: minivae's training step against PyTorch and against its own matrix products.

    python benchmarks/bench_cpu.py            # full run (a few minutes; torch.compile adds ~1 min)
    python benchmarks/bench_cpu.py --quick    # a smoke run
    python benchmarks/bench_cpu.py --tables step score --batches 32 128 4096   # the two comparisons only
    python benchmarks/bench_cpu.py --tables step score --against ../before     # and another checkout, same run

The NumPy workers run as a user's machine does: OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE, which some machines set to hold old OpenBLAS builds to a
known kernel (on an AVX-512 CPU they force a current one onto its AVX2
kernels), are removed from their environment before NumPy is imported.
--machine-blas keeps them. The first lines say which, the OpenBLAS kernel
the workers got (threadpoolctl's ``architecture``) and the CPU's vector
extensions (as NumPy detects them).

Model: the MNIST-shaped VAE, 784-400-20 with ReLU, Bernoulli decoder from
logits, S = 1, Adam, float32, on synthetic binary data of MNIST's shape.

Each contender runs in its own worker process (NumPy's OpenBLAS threads keep
spinning after a product and would slow a neighbour in the same process) and
the parent interleaves them: every repeat times each contender once, in a
rotating order, and the table reports medians over repeats. All contenders
use the same number of threads (``--threads``, default 2).

Contenders:
  minivae        Trainer's step: forward, loss every 10th step as in training, backward, Adam
  torch-eager    PyTorch eager, torch.optim.Adam with its default update (on the CPU: one tensor at a time)
  torch-fused    PyTorch eager, torch.optim.Adam(fused=True)
  torch-compile  torch.compile'd forward + loss, fused Adam (where it works)
  gemm-floor     the step's 11 matrix products alone (NumPy float32, preallocated outputs)
  before         with ``--against DIR``: the same step (and scoring) from the minivae checkout in DIR, for
                 before/after figures taken in one run (e.g. ``git worktree add ../before <commit>``)

Tables: examples/s of each contender and the efficiency (floor time / minivae
time); where the step's time goes (the step, and each of its parts timed alone:
the products, forward+backward, the non-finite guard, the Adam update and two
of its ten passes, and PyTorch's fused Adam update for comparison); the step's
memory; its scaling in batch and width; and the importance-weighted
log-likelihood against the same estimate in PyTorch.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time

D, H, K = 784, 400, 20

#: Environment variables that pin OpenBLAS's kernel and cache size; a user's machine sets neither.
FORCED_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
TABLES = ("step", "breakdown", "memory", "scaling", "score")


# --------------------------------------------------------------------------- workers (one process each)


def synthetic_data(batch, seed=0):
    import numpy as np

    return (np.random.default_rng(seed).random((batch, D)) < 0.3).astype(np.float32)


class MinivaeStep:
    def __init__(self, batch, hidden=H):
        from minivae import VAE, Trainer

        self.model = VAE(D, K, (hidden,), likelihood="bernoulli", seed=0)
        self.trainer = Trainer(self.model, "adam", lr=1e-3, batch_size=batch)
        self.ws = self.trainer.workspace(batch)
        self.ws.x[...] = synthetic_data(batch)
        self.i = 0

    def __call__(self):
        self.i += 1
        self.trainer.step(self.ws, 1.0, need_loss=self.i % 10 == 0)

    def parts(self):
        """The step's parts, each callable alone (the breakdown table). Time them between :meth:`save` and
        :meth:`restore`: Adam repeated on one gradient walks the parameters away from a trained model's."""
        import numpy as np

        tr, opt = self.trainer, self.trainer.optimizer
        return {"forward+backward": lambda: tr.engine_step(self.ws, tr.noise_rng, 1.0, need_loss=False),
                "guard": lambda: tr.check_finite(None),
                "adam": opt.step,
                "sqrt": lambda: np.sqrt(opt.v, out=opt.scratch),  # one of Adam's ten passes
                "multiply": lambda: np.multiply(opt.m, 1.0, out=opt.scratch)}  # another, for comparison

    def save(self):
        opt = self.trainer.optimizer
        self._saved = [a.copy() for a in (opt.params.data, opt.m, opt.v)], opt.t

    def restore(self):
        opt = self.trainer.optimizer
        arrays, opt.t = self._saved
        for target, saved in zip((opt.params.data, opt.m, opt.v), arrays):
            target[...] = saved


def torch_vae(torch):
    """The benchmark's VAE in PyTorch (also used by bench_gpu.py): its modules and its loss, the negative ELBO."""
    import torch.nn.functional as F

    net = torch.nn.ModuleDict({"enc": torch.nn.Linear(D, H), "head": torch.nn.Linear(H, 2 * K),
                               "dec": torch.nn.Linear(K, H), "out": torch.nn.Linear(H, D)})

    def loss_fn(x, noise):
        mu, log_var = net["head"](F.relu(net["enc"](x))).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * log_var) * noise
        logits = net["out"](F.relu(net["dec"](z)))
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * (mu * mu + log_var.exp() - 1.0 - log_var).sum()
        return (nll + kl) / x.shape[0]

    return net, loss_fn


class TorchStep:
    def __init__(self, batch, kind):
        import torch

        torch.manual_seed(0)
        self.torch = torch
        net, loss_fn = torch_vae(torch)
        self.loss_fn = torch.compile(loss_fn) if kind == "compile" else loss_fn
        self.opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True if kind in ("fused", "compile") else None)  # None: torch's default
        self.x = torch.from_numpy(synthetic_data(batch))
        self.batch = batch

    def __call__(self):
        noise = self.torch.randn(self.batch, K)
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.x, noise)
        loss.backward()
        self.opt.step()

    def parts(self):
        return {"adam": self.opt.step}  # the gradients of the last step are still there


class GemmFloor:
    """The 11 matrix products of the step, forward and backward, into preallocated outputs.

    ``xp`` is NumPy here; bench_gpu.py passes CuPy for the cuBLAS floor.
    """

    def __init__(self, batch, hidden=H, xp=None):
        import numpy as np

        xp = np if xp is None else xp
        rng = np.random.default_rng(0)
        f32 = np.float32
        self.xp = xp
        self.x = xp.asarray(synthetic_data(batch))
        # Scaled so no product overflows or underflows to denormals (which are slow): values like a real step's.
        self.W = [xp.asarray(rng.standard_normal(s, dtype=f32) / float(np.sqrt(s[0])))  # a Python float keeps float32
                  for s in ((D, hidden), (hidden, 2 * K), (K, hidden), (hidden, D))]
        shapes = {"h": (batch, hidden), "o": (batch, 2 * K), "z": (batch, K), "g": (batch, hidden),
                  "l": (batch, D), "dg": (batch, hidden), "dz": (batch, K), "dh": (batch, hidden)}
        self.b = {k: xp.asarray(rng.standard_normal(s, dtype=f32)) for k, s in shapes.items()}
        self.dW = [xp.zeros_like(w) for w in self.W]
        assert all(a.dtype == f32 for a in [*self.W, *self.b.values(), *self.dW])

    def __call__(self):
        mm, b, W, dW = self.xp.matmul, self.b, self.W, self.dW
        mm(self.x, W[0], out=b["h"])  # forward: encoder, head, decoder, output layer
        mm(b["h"], W[1], out=b["o"])
        mm(b["z"], W[2], out=b["g"])
        mm(b["g"], W[3], out=b["l"])
        mm(b["g"].T, b["l"], out=dW[3])  # backward: output layer, decoder, head, encoder
        mm(b["l"], W[3].T, out=b["dg"])
        mm(b["z"].T, b["dg"], out=dW[2])
        mm(b["dg"], W[2].T, out=b["dz"])
        mm(b["h"].T, b["o"], out=dW[1])
        mm(b["o"], W[1].T, out=b["dh"])
        mm(self.x.T, b["dh"], out=dW[0])


class MinivaeScore:
    def __init__(self, n, k):
        from minivae import VAE

        self.model = VAE(D, K, (H,), likelihood="bernoulli", seed=0)
        self.x, self.k = synthetic_data(n), k

    def __call__(self):
        self.model.log_likelihood(self.x, k=self.k)


class TorchScore:
    def __init__(self, n, k):
        import torch
        import torch.nn.functional as F

        torch.manual_seed(0)
        enc, head, dec, out = (torch.nn.Linear(D, H), torch.nn.Linear(H, 2 * K), torch.nn.Linear(K, H),
                               torch.nn.Linear(H, D))
        x = torch.from_numpy(synthetic_data(n))
        log2pi = float(torch.log(torch.tensor(2 * torch.pi)))

        @torch.no_grad()
        def score(batch=256, chunk=20):
            result = []
            for xb in x.split(batch):
                mu, log_var = head(F.relu(enc(xb))).chunk(2, dim=1)
                std = torch.exp(0.5 * log_var)
                logws = []
                for done in range(0, k, chunk):
                    noise = torch.randn(min(chunk, k - done), xb.shape[0], K)
                    z = mu + std * noise
                    logits = out(F.relu(dec(z)))
                    log_px = -F.binary_cross_entropy_with_logits(logits, xb.expand_as(logits), reduction="none").sum(-1)
                    log_pz = -0.5 * (log2pi + z * z).sum(-1)
                    log_qz = -0.5 * (log2pi + log_var + noise * noise).sum(-1)
                    logws.append(log_px + log_pz - log_qz)
                result.append(torch.logsumexp(torch.cat(logws), dim=0) - torch.log(torch.tensor(float(k))))
            return torch.cat(result)

        self.score = score

    def __call__(self):
        self.score()


def _time(fn, target_s):
    """Seconds per call, over enough calls to last about ``target_s``."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    n = max(1, int(target_s / once))
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def _memory(batch, steps=200, warmup=20):
    """Peak bytes NumPy allocates within a step without and with the loss (the most of 5 each), growth over ``steps``
    steps, page faults per step; after ``warmup`` steps (the first allocates the step's buffers).

    The trainer asks for the loss every 10th step; that step also runs the reference negative ELBO (in blocks of
    rows), so it is measured on its own.
    """
    import resource
    import tracemalloc

    step = MinivaeStep(batch)
    for _ in range(warmup):
        step()
    tracemalloc.start()
    peaks = []
    for need_loss in (False, True):  # the most of 5 steps: the threads of a split batch overlap differently each time
        peak = 0
        for _ in range(5):
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            step.trainer.step(step.ws, 1.0, need_loss=need_loss)
            peak = max(peak, tracemalloc.get_traced_memory()[1] - base)
        peaks.append(peak)
    before = tracemalloc.get_traced_memory()[0]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    growth = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return (*peaks, growth, faults / steps)


def worker_environment(environ, threads: int, machine_blas: bool = False) -> dict:
    """The environment a worker runs NumPy (and PyTorch) in: ``threads`` threads; without the variables of
    :data:`FORCED_BLAS_VARS` unless ``machine_blas`` (PyTorch reads neither, so removing them changes NumPy only)."""
    env = {name: value for name, value in environ.items() if machine_blas or name not in FORCED_BLAS_VARS}
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(threads)
    return env


def cpu_vector_extensions() -> str:
    """The CPU's SIMD extensions NumPy detected (``AVX2 FMA3 AVX512F ...``), the widest last."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # pragma: no cover - older NumPy
        return "unknown"
    names = [n for n in __cpu_features__ if __cpu_features__[n] and n.startswith(("SSE4", "AVX", "FMA"))]
    return " ".join(names) or "none beyond SSE3"


def worker(conn, threads, machine_blas=False, source=None):
    """Serve one contender. ``source``: a checkout whose ``minivae`` this worker imports instead of this one's."""
    if "numpy" in sys.modules:  # OpenBLAS reads its environment once, when NumPy loads it
        conn.send(("error", "NumPy was imported before the worker could set its environment"))
        return
    if source is not None:
        sys.path.insert(0, source)
        if "minivae" in sys.modules:
            conn.send(("error", "minivae was imported before the worker could put --against first on its path"))
            return
    env = worker_environment(os.environ, threads, machine_blas)
    for name in [n for n in os.environ if n not in env]:
        del os.environ[name]
    os.environ.update(env)
    made = {}
    while True:
        msg = conn.recv()
        if msg is None:
            return
        cmd, key, args = msg
        try:
            if cmd == "make":
                kind = key[0]
                if source is not None:  # the other checkout's minivae, or nothing
                    import minivae

                    if not os.path.realpath(minivae.__file__).startswith(os.path.realpath(source) + os.sep):
                        raise RuntimeError(f"--against: expected minivae from {source}, got {minivae.__file__}")
                if kind in ("minivae", "before"):
                    made[key] = MinivaeStep(*args)
                elif kind.startswith("torch-"):
                    import torch

                    torch.set_num_threads(threads)
                    made[key] = TorchStep(args[0], kind[len("torch-"):])
                elif kind == "gemm-floor":
                    made[key] = GemmFloor(*args)
                elif kind in ("score-minivae", "score-before"):
                    made[key] = MinivaeScore(*args)
                elif kind == "score-torch":
                    import torch

                    torch.set_num_threads(threads)
                    made[key] = TorchScore(*args)
                for _ in range(1 if kind.startswith("score-") else 3):  # warm-up (torch.compile compiles here)
                    made[key]()
                conn.send(("ok", None))
            elif cmd == "time":
                conn.send(("ok", _time(made[key], args[0])))
            elif cmd == "time-part":  # one part of a made contender: args (target_s, part name)
                contender = made[key]
                if hasattr(contender, "save"):
                    contender.save()
                seconds = _time(contender.parts()[args[1]], args[0])
                if hasattr(contender, "save"):
                    contender.restore()
                conn.send(("ok", seconds))
            elif cmd == "memory":
                conn.send(("ok", _memory(*args)))
            elif cmd == "info":
                import numpy  # noqa: F401  (so threadpoolctl sees its BLAS)

                info = {"blas_env": {name: os.environ.get(name) for name in FORCED_BLAS_VARS},
                        "cpu": cpu_vector_extensions()}
                try:
                    from threadpoolctl import threadpool_info

                    info["blas"] = [(i.get("internal_api"), i.get("num_threads"), i.get("architecture"))
                                    for i in threadpool_info()]
                except ImportError:
                    info["blas"] = "threadpoolctl not installed"
                from minivae.cores import cpu_threads  # after the BLAS list: minivae loads SciPy and its BLAS

                from minivae.fast import STEP_MIN_ROWS

                info["scoring_threads"], info["step_min_rows"] = cpu_threads(), STEP_MIN_ROWS
                try:
                    import torch

                    info["torch"] = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
                except ImportError:
                    info["torch"] = None
                conn.send(("ok", info))
        except Exception as exc:  # report, keep serving
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class Pool:
    """One worker process per contender."""

    def __init__(self, threads, machine_blas=False, against=None):
        self.ctx = mp.get_context("spawn")
        self.threads = threads
        self.machine_blas = machine_blas
        self.against = against  # the checkout of the "before" contenders
        self.procs = {}

    def ask(self, contender, cmd, key, args):
        if contender not in self.procs:
            parent, child = self.ctx.Pipe()
            source = self.against if contender in ("before", "score-before") else None
            proc = self.ctx.Process(target=worker, args=(child, self.threads, self.machine_blas, source),
                                    daemon=True)
            proc.start()
            self.procs[contender] = (proc, parent)
        conn = self.procs[contender][1]
        conn.send((cmd, key, args))
        status, value = conn.recv()
        if status == "error":
            raise RuntimeError(value)
        return value

    def close(self):
        for proc, conn in self.procs.values():
            conn.send(None)
            proc.join(timeout=10)


# --------------------------------------------------------------------------- the tables


#: Pause before each timing: OpenBLAS workers spin ~0.1 s after a product, OpenMP's a little less.
SETTLE_S = 0.3


def interleaved(pool, keys, repeats, target_s, every=None):
    """Median seconds per call for each key, timing the keys in rotating order every repeat.

    A key is a made contender's key, or ``("part", key, name)`` for one part of it (``parts()``). ``every``, a
    dict, receives each key's seconds in every repeat (for ratios taken repeat by repeat).
    """
    times = {key: [] for key in keys}
    for r in range(repeats):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for key in order:
            time.sleep(SETTLE_S)  # let the previous contender's spinning BLAS/OpenMP threads go to sleep
            if key[0] == "part":
                times[key].append(pool.ask(key[1][0], "time-part", key[1], (target_s, key[2])))
            else:
                times[key].append(pool.ask(key[0], "time", key, (target_s,)))
    if every is not None:
        every.update(times)
    return {key: statistics.median(t) for key, t in times.items()}


def breakdown(pool, batches, repeats, target_s, have_torch):
    """The table of where the step's time goes: the step, and each of its parts timed alone."""
    parts = ("forward+backward", "guard", "adam", "sqrt", "multiply")
    print(f"\nWhere the step's time goes (ms per call, median of {repeats} interleaved repeats; each part timed alone)")
    print(f"{'batch':>6} {'step':>7} {'products':>9} {'fwd+bwd':>8} {'guard':>6} {'adam':>6} {'sqrt':>6} "
          f"{'multiply':>9} {'parts summed':>13} {'rest':>6} {'torch fused adam':>17}")
    for batch in batches:
        step, floor = ("minivae", batch), ("gemm-floor", batch)
        keys = [step, floor] + [("part", step, name) for name in parts]
        for key in (step, floor):
            pool.ask(key[0], "make", key, (batch,))
        if have_torch:
            torch_key = ("torch-fused", batch)
            pool.ask("torch-fused", "make", torch_key, (batch,))
            keys.append(("part", torch_key, "adam"))
        t = {key[2] if key[0] == "part" and key[1] == step else key: value * 1e3
             for key, value in interleaved(pool, keys, repeats, target_s).items()}
        summed = t["forward+backward"] + t["guard"] + t["adam"]
        torch_adam = f"{t[keys[-1]]:.2f}" if have_torch else "-"
        print(f"{batch:>6} {t[step]:>7.2f} {t[floor]:>9.2f} {t['forward+backward']:>8.2f} {t['guard']:>6.2f} "
              f"{t['adam']:>6.2f} {t['sqrt']:>6.3f} {t['multiply']:>9.3f} {summed:>13.2f} {t[step] - summed:>6.2f} "
              f"{torch_adam:>17}")


def positive_int(text):
    """An argparse type: a positive integer (bench_gpu.py uses it too)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def checkout(text):
    """An argparse type: a folder holding a minivae package (``DIR/minivae/__init__.py``), as an absolute path."""
    path = os.path.abspath(text)
    if not os.path.isfile(os.path.join(path, "minivae", "__init__.py")):
        raise argparse.ArgumentTypeError(f"expected a checkout of minivae (a folder with minivae/__init__.py), "
                                         f"got {text!r}")
    return path


def paired(every, now, before):
    """``before``'s seconds over ``now``'s, repeat by repeat (each pair timed side by side): median (min-max)."""
    ratios = [b / n for n, b in zip(every[now], every[before])]
    return f"{statistics.median(ratios):.3f}x ({min(ratios):.3f}-{max(ratios):.3f})"


def fmt(x):
    return "-" if x is None else f"{x:,.0f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no torch.compile, smaller tables")
    parser.add_argument("--threads", type=positive_int, default=2, help="threads for every contender (default 2)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="interleaved repeats (default 7, or 3 with --quick)")
    parser.add_argument("--batches", type=positive_int, nargs="+", default=None,
                        help="batch sizes of the first two tables (default 32 128 512 4096; 32 128 4096 for the second)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES),
                        help="which tables to print (default all: %(default)s)")
    parser.add_argument("--machine-blas", action="store_true",
                        help=f"keep {' and '.join(FORCED_BLAS_VARS)} in the NumPy workers' environment "
                             "(by default they are removed, as on a user's machine)")
    parser.add_argument("--against", type=checkout, default=None, metavar="DIR",
                        help="also time the step and scoring of the minivae checkout in DIR ('before'), in the "
                             "same interleaved repeats, and print the ratios now/before repeat by repeat")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    target = 0.05 if args.quick else 0.25
    batches = args.batches or (32, 128, 512, 4096)
    breakdown_batches = args.batches or ((128,) if args.quick else (32, 128, 4096))

    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    pool = Pool(args.threads, args.machine_blas, args.against)
    try:
        info = pool.ask("minivae", "info", None, ())
        print(f"threads: {args.threads}; NumPy BLAS: {info['blas']}")
        forced = ", ".join(f"{name}={value}" for name, value in info["blas_env"].items() if value is not None)
        print(f"OpenBLAS kernel variables in the NumPy workers: {forced or 'none'} "
              f"({'kept from this machine, --machine-blas' if args.machine_blas else 'removed, as on a user machine'})")
        print(f"CPU vector extensions (NumPy): {info['cpu']}")
        split_step = (f"each batch of at least {2 * info['step_min_rows']} examples" if info["scoring_threads"] > 1
                      else "no batch")  # a batch splits in two from STEP_MIN_ROWS a block (minivae.fast)
        print(f"minivae's scoring splits each batch over {info['scoring_threads']} thread(s), its training step "
              f"{split_step}, the BLAS on one thread each (minivae.cores)")
        if have_torch:
            print(f"PyTorch: {pool.ask('torch-eager', 'info', None, ())['torch']}")
        else:
            print("PyTorch: not installed, its columns are skipped (pip install torch==2.13.0 for the CPU build)")

        if "step" in args.tables:
            step_table(pool, args, batches, repeats, target, have_torch)
        if "breakdown" in args.tables:
            breakdown(pool, breakdown_batches, repeats, target, have_torch)
        if "memory" in args.tables:
            memory_table(pool, *((10, 2) if args.quick else (200, 20)))
        if "scaling" in args.tables:
            scaling_table(pool, args, repeats, target)
        if "score" in args.tables:
            score_table(pool, args, repeats, have_torch)
    finally:
        pool.close()


def step_table(pool, args, batches, repeats, target, have_torch):
    """The training step's table: examples/s of every contender, the ratio to the best PyTorch, the efficiency;
    with ``--against``, the other checkout's step beside it and their ratio repeat by repeat."""
    contenders = ["minivae", "gemm-floor"] + (["before"] if args.against else [])
    if have_torch:
        contenders += ["torch-eager", "torch-fused"]
        if not (args.quick or args.no_compile):
            contenders.append("torch-compile")
    print("\nTraining step, 784-400-20 ReLU, Bernoulli, S = 1, Adam, float32 "
          f"(examples/s, median of {repeats} interleaved repeats)")
    extra = f" {'before/best torch':>18} {'now/before, paired':>26}" if args.against else ""
    head = f"{'batch':>6} " + " ".join(f"{c:>14}" for c in contenders) + f" {'minivae/best torch':>19} {'efficiency':>11}"
    print(head + extra)
    for batch in batches:
        keys = []
        for c in contenders:
            try:
                pool.ask(c, "make", (c, batch), (batch,))
                keys.append((c, batch))
            except RuntimeError as exc:
                print(f"  {c} at batch {batch} does not run here: {exc}")
        every = {}
        t = interleaved(pool, keys, repeats, target, every)
        rate = {c: batch / t[(c, batch)] if (c, batch) in t else None for c in contenders}
        torch_rates = [rate[c] for c in contenders if c.startswith("torch") and rate[c]]
        ratio = f"{rate['minivae'] / max(torch_rates):.2f}x" if torch_rates else "-"
        efficiency = t[("gemm-floor", batch)] / t[("minivae", batch)]
        line = f"{batch:>6} " + " ".join(f"{fmt(rate[c]):>14}" for c in contenders) + f" {ratio:>19} {efficiency:>11.2f}"
        if args.against and rate["before"]:
            before = f"{rate['before'] / max(torch_rates):.2f}x" if torch_rates else "-"
            line += f" {before:>18} {paired(every, ('minivae', batch), ('before', batch)):>26}"
        print(line)


def memory_table(pool, steps, warmup):
    """The step's memory: peak allocation without and with the loss, growth over ``steps`` steps, page faults."""
    print("\nminivae step memory (tracemalloc: NumPy allocations; page faults from getrusage)")
    print(f"{'batch':>6} {'peak within a step':>19} {'the same, with the loss':>24} {f'growth over {steps} steps':>22}"
          f" {'page faults/step':>17}")
    for batch in (128, 4096):
        peak, peak_loss, growth, faults = pool.ask("minivae", "memory", None, (batch, steps, warmup))
        print(f"{batch:>6} {peak / 1024:>16.1f} KiB {peak_loss / 1024:>21.1f} KiB {growth / 1024:>19.1f} KiB"
              f" {faults:>17.1f}")


def scaling_table(pool, args, repeats, target):
    """The step's time against batch size and hidden width, beside the GEMM floor's."""
    print("\nScaling of the minivae step (should be linear in batch and in hidden width)")
    print(f"{'batch':>6} {'hidden':>7} {'ms/step':>9} {'us/example':>11} {'floor ms':>9} {'efficiency':>11}")
    shapes = [(b, H) for b in ((32, 128, 512, 2048, 4096) if not args.quick else (128, 512))]
    shapes += [(512, h) for h in (100, 200, 800, 1600)] if not args.quick else [(256, 800)]
    for batch, hidden in shapes:
        keys = [("minivae", batch, hidden), ("gemm-floor", batch, hidden)]
        for key in keys:
            pool.ask(key[0], "make", key, (batch, hidden))
        t = interleaved(pool, keys, repeats, target)
        step, floor = t[keys[0]], t[keys[1]]
        print(f"{batch:>6} {hidden:>7} {step * 1e3:>9.2f} {step / batch * 1e6:>11.2f} {floor * 1e3:>9.2f} "
              f"{floor / step:>11.2f}")


def score_table(pool, args, repeats, have_torch):
    """The importance-weighted log-likelihood against the same estimate in PyTorch (and ``--against``'s)."""
    n, k = (1000, 1000) if not args.quick else (200, 100)
    print(f"\nImportance-weighted log-likelihood, k = {k}, on {n} examples (seconds, median)")
    keys = [("score-minivae", n, k)] + ([("score-torch", n, k)] if have_torch else [])
    keys += [("score-before", n, k)] if args.against else []
    for key in keys:
        pool.ask(key[0], "make", key, (n, k))
    every = {}
    t = interleaved(pool, keys, max(3, repeats // 2), 0.0, every)
    line = f"minivae {t[keys[0]]:.2f} s"
    if have_torch:
        line += f"   PyTorch (no_grad) {t[keys[1]]:.2f} s   ratio torch/minivae {t[keys[1]] / t[keys[0]]:.2f}x"
    if args.against:
        line += f"   before {t[keys[-1]]:.2f} s"
        line += f" (torch/before {t[keys[1]] / t[keys[-1]]:.2f}x)" if have_torch else ""
        line += f"   now/before, paired {paired(every, keys[0], keys[-1])}"
    print(line)


if __name__ == "__main__":
    sys.exit(main())
