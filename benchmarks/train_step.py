"""Time one training step (forward + backward + AdamW) of a small transformer.

    python benchmarks/train_step.py                 # d_model 256, 4 layers, 4 heads, seq 80, batch 32
    python benchmarks/train_step.py --steps 20 --d-model 128
    python benchmarks/train_step.py --device cuda   # tinymuse on CuPy against PyTorch on CUDA

Prints ms/step, tokens/s and the share of the device's measured float32 matmul
peak that the step reaches. When PyTorch is importable, the same model is built
in PyTorch (eager, on the same device) and timed in the same run; the last line
reads ``tinymuse/pytorch = R``, the ratio of step times (lower is better for
tinymuse). tinymuse's AdamW is the fused one that ``tinymuse.training.fit`` uses;
PyTorch's is its default. On a GPU each step ends by waiting for the device, so a
step's time is its own. Without CuPy and a GPU, ``--device cuda`` says so in one
line and exits.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import tinymuse
from tinymuse import backend, nn, optim
from tinymuse import functional as F


class TinyMuseLM(nn.Module):
    """Token embedding + learned positions → pre-norm blocks → LayerNorm → logits."""

    def __init__(self, vocab, d_model, layers, heads, seq):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(seq, d_model)
        self.blocks = nn.ModuleList([nn.TransformerBlock(d_model, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids):
        x = self.embed(ids) + self.positions(self.positions.weight.xp.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def build_torch_model(torch, vocab, d_model, layers, heads, seq):
    tnn, tF = torch.nn, torch.nn.functional

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = tnn.LayerNorm(d_model), tnn.LayerNorm(d_model)
            self.qkv, self.proj = tnn.Linear(d_model, 3 * d_model), tnn.Linear(d_model, d_model)
            self.fc1, self.fc2 = tnn.Linear(d_model, 4 * d_model), tnn.Linear(4 * d_model, d_model)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            attn = tF.scaled_dot_product_attention(q, k, v)
            x = x + self.proj(attn.transpose(1, 2).reshape(b, t, c))
            return x + self.fc2(tF.gelu(self.fc1(self.ln2(x)), approximate="tanh"))

    class LM(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.positions = tnn.Embedding(vocab, d_model), tnn.Embedding(seq, d_model)
            self.blocks = tnn.ModuleList([Block() for _ in range(layers)])
            self.norm, self.head = tnn.LayerNorm(d_model), tnn.Linear(d_model, vocab)

        def forward(self, ids):
            x = self.embed(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x))

    return LM()


def matmul_peak_gflops(device="cpu", n=2048, repeats=5) -> float:
    """Best observed float32 GEMM throughput on ``device`` (NumPy's BLAS, or CuPy's cuBLAS)."""
    xp, sync = backend.xp_for(device), synchronizer(device)
    a = xp.asarray(np.random.rand(n, n).astype(np.float32))
    b = xp.asarray(np.random.rand(n, n).astype(np.float32))
    a @ b
    sync()
    best = min(_time(lambda: (a @ b, sync())) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def synchronizer(device):
    """A function that waits until the GPU has finished what was launched (nothing on a CPU)."""
    if device == "cpu":
        return lambda: None
    cupy = backend.xp_for("cuda")
    return lambda: cupy.cuda.Device().synchronize()


def cuda_missing(torch) -> str | None:
    """Why ``--device cuda`` cannot run here, or None when it can."""
    try:
        backend.check_device("cuda")
    except backend.DeviceError as error:
        return f"train_step.py --device cuda cannot run here: {error}"
    if torch is not None and not torch.cuda.is_available():
        return ("train_step.py --device cuda compares against PyTorch on CUDA, but this PyTorch "
                "sees no GPU (install a CUDA build of torch, or pass --no-torch)")
    return None


def step_flops(vocab, d_model, layers, seq, batch) -> float:
    """Matmul FLOPs of forward + backward (backward ≈ 2× forward)."""
    tokens = batch * seq
    per_layer = 2 * tokens * 12 * d_model ** 2 + 2 * 2 * batch * seq ** 2 * d_model
    forward = layers * per_layer + 2 * tokens * d_model * vocab
    return 3 * forward


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_step_time(step, steps, warmup, sync) -> float:
    def timed():
        step()
        sync()
    for _ in range(warmup):
        timed()
    return float(np.median([_time(timed) for _ in range(steps)]))


def time_tinymuse(args, ids, targets) -> float:
    tinymuse.manual_seed(0)
    model = TinyMuseLM(args.vocab, args.d_model, args.layers, args.heads, args.seq)
    model.to(args.device)
    opt = optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    ids, targets = backend.to_device(ids, args.device), backend.to_device(targets, args.device)

    def step():
        loss = F.cross_entropy(model(ids), targets)
        model.zero_grad()
        loss.backward()
        opt.step()

    return median_step_time(step, args.steps, args.warmup, synchronizer(args.device))


def time_pytorch(torch, args, ids, targets) -> float:
    torch.manual_seed(0)
    model = build_torch_model(torch, args.vocab, args.d_model, args.layers, args.heads, args.seq)
    model.to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids_t = torch.from_numpy(ids).to(args.device)
    targets_t = torch.from_numpy(targets).to(args.device)

    def step():
        logits = model(ids_t)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, args.vocab), targets_t.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    return median_step_time(step, args.steps, args.warmup, sync)


def import_torch(args):
    if args.no_torch:
        return None
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: no comparison (pip install torch to add it)")
        return None
    return torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq", type=int, default=80)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    args = parser.parse_args()
    torch = import_torch(args)
    if args.device == "cuda" and (reason := cuda_missing(torch)):
        print(reason)
        return 1

    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.vocab, (args.batch, args.seq))
    targets = rng.integers(0, args.vocab, (args.batch, args.seq))
    peak = matmul_peak_gflops(args.device)
    flops = step_flops(args.vocab, args.d_model, args.layers, args.seq, args.batch)
    tokens = args.batch * args.seq
    print(f"model: d_model {args.d_model}, {args.layers} layers, {args.heads} heads, "
          f"seq {args.seq}, batch {args.batch}, vocab {args.vocab}; device {args.device}")
    blas = "CuPy, cuBLAS" if args.device == "cuda" else "NumPy BLAS"
    print(f"float32 matmul peak ({blas}, 2048² GEMM): {peak:.1f} GFLOP/s")

    def report(name, seconds):
        achieved = flops / seconds / 1e9
        print(f"{name:>9}: {seconds * 1e3:8.1f} ms/step  {tokens / seconds:9.0f} tokens/s  "
              f"{achieved:6.1f} GFLOP/s = {achieved / peak:5.1%} of peak")

    ours = time_tinymuse(args, ids, targets)
    report("tinymuse", ours)
    if torch is None:
        return 0
    theirs = time_pytorch(torch, args, ids, targets)
    report("pytorch", theirs)
    print(f"tinymuse/pytorch = {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
