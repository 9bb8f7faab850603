#!/usr/bin/env python3
"""The lung SegNet of models/lung_segnet in PyTorch, for side-by-side timings with crema.

The same layers: VGG16 encoder (conv 3x3 + BatchNorm + ReLU, max pooling that returns its
indices) and a mirrored decoder (MaxUnpool2d with those indices), 26 convolutions, 2 classes,
cross-entropy loss. BatchNorm in training mode (batch statistics), as SegNet's BN in LEARN mode.

CPU:  python3 segnet_torch.py --device cpu --threads 2 --batch 1 --size 256 [--channels-last]
GPU:  python3 segnet_torch.py --device cuda --batch 6 --size 256 --train   (SGD steps, cuDNN
      benchmark mode, TF32 allowed, timed with CUDA events after a warm-up)
      --height 360 --width 480 for non-square inputs (--size sets both when they are not given).
Pooling rounds up (ceil_mode), as Caffe's: 45 rows pool to 23 and unpool back to 45.
Prints one JSON line with ms per forward/backward/iteration (medians), images/s, GFLOP/s and
peak memory.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ENCODER = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]


class SegNet(nn.Module):
    def __init__(self, width_div=1, classes=2, in_ch=1):
        super().__init__()
        self.enc = nn.ModuleList()
        c = in_ch
        for convs, ch in ENCODER:
            ch //= width_div
            stage = []
            for _ in range(convs):
                stage += [nn.Conv2d(c, ch, 3, padding=1), nn.BatchNorm2d(ch, eps=1e-9), nn.ReLU(inplace=True)]
                c = ch
            self.enc.append(nn.Sequential(*stage))
        self.dec = nn.ModuleList()
        for s in range(5, 0, -1):
            convs, ch = ENCODER[s - 1]
            stage = []
            for i in range(convs, 0, -1):
                if i > 1:
                    n = ch // width_div
                elif s > 1:
                    n = ENCODER[s - 2][1] // width_div
                else:
                    n = classes
                stage.append(nn.Conv2d(c, n, 3, padding=1))
                if not (s == 1 and i == 1):
                    stage += [nn.BatchNorm2d(n, eps=1e-9), nn.ReLU(inplace=True)]
                c = n
            self.dec.append(nn.Sequential(*stage))

    def forward(self, x):
        idx, sizes = [], []
        for stage in self.enc:
            x = stage(x)
            sizes.append(x.shape)
            x, i = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
            idx.append(i)
        for stage in self.dec:
            i = idx.pop()
            x = F.max_unpool2d(x, i, 2, 2, output_size=sizes.pop()[-2:])
            x = stage(x)
        return x


def conv_flops(model, size):
    total, h = 0, size
    x = torch.zeros(1, 1, size, size)
    hooks = []
    acc = [0]

    def hook(m, inp, out):
        acc[0] += 2 * out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()
        model(x)
        model.train()
    for hk in hooks:
        hk.remove()
    return acc[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--height", type=int, default=0, help="input height (default: --size)")
    ap.add_argument("--width", type=int, default=0, help="input width (default: --size)")
    ap.add_argument("--width-div", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--train", action="store_true", help="time whole SGD steps")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after the timing, profile N more steps with torch.profiler and add the kernels that "
                         "took the most device time to the JSON line (\"profile\"; best effort: a failure is "
                         "reported there, the timings stand)")
    a = ap.parse_args()
    h = a.height or a.size
    w = a.width or a.size
    dev = torch.device(a.device)
    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model = SegNet(a.width_div).to(dev)
    flops_fwd = conv_flops(model.cpu(), 64) * (h * w) / (64 * 64) * a.batch
    model = model.to(dev)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.rand(a.batch, 1, h, w, device=dev).to(memory_format=fmt)
    y = torch.randint(0, 2, (a.batch, h, w), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    fwd, bwd, it = [], [], []
    if a.device != "cpu":
        # CUDA events around each step, no synchronisation inside it (as a training loop runs).
        ev = [[torch.cuda.Event(enable_timing=True) for _ in range(3)] for _ in range(a.warmup + a.iterations)]
        for i in range(a.warmup + a.iterations):
            ev[i][0].record()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            ev[i][1].record()
            loss.backward()
            if a.train:
                opt.step()
            ev[i][2].record()
            ev[i][2].synchronize()
            if i >= a.warmup:
                fwd.append(ev[i][0].elapsed_time(ev[i][1]))
                bwd.append(ev[i][1].elapsed_time(ev[i][2]))
                it.append(ev[i][0].elapsed_time(ev[i][2]))
    else:
        for i in range(a.warmup + a.iterations):
            opt.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            t1 = time.perf_counter()
            loss.backward()
            if a.train:
                opt.step()
            t2 = time.perf_counter()
            if i >= a.warmup:
                fwd.append((t1 - t0) * 1e3)
                bwd.append((t2 - t1) * 1e3)
                it.append((t2 - t0) * 1e3)
    med = lambda v: sorted(v)[len(v) // 2]
    out = {
        "peer": f"PyTorch {torch.__version__}",
        "device": a.device if a.device == "cpu" else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(),
        "batch": a.batch, "height": h, "width": w,
        "channels_last": a.channels_last,
        "forward_ms": med(fwd), "backward_ms": med(bwd), "iteration_ms": med(it),
        "images_per_s": a.batch / (med(it) / 1e3),
        "conv_gflop_fwd": flops_fwd / 1e9,
        "gflops": 3 * flops_fwd / 1e9 / (med(it) / 1e3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
    }
    if a.device != "cpu":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 1e6
        out["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
        out["loss"] = float(loss)
    if a.profile > 0:
        out["profile"] = profile_steps(a, model, opt, x, y)
    print(json.dumps(out))


def profile_steps(a, model, opt, x, y):
    """The kernels (ops on the CPU) that took the most time over `a.profile` steps, per step:
    [[name, ms, calls], ...], most first; or {"error": why}. For comparing with crema's
    per-layer profile; never allowed to spoil the timings above."""
    try:
        from torch.profiler import ProfilerActivity, profile

        cuda = a.device != "cpu"
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            for _ in range(a.profile):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                if a.train:
                    opt.step()
            if cuda:
                torch.cuda.synchronize()
        rows = []
        for e in prof.key_averages():
            # The attribute's name changed across PyTorch versions (cuda -> device).
            names = ("self_device_time_total", "self_cuda_time_total") if cuda else ("self_cpu_time_total",)
            us = next((getattr(e, n) for n in names if hasattr(e, n)), 0) or 0
            if us > 0:
                rows.append([e.key, us / 1e3 / a.profile, e.count / a.profile])
        rows.sort(key=lambda r: -r[1])
        return [[n, round(ms, 4), round(c, 2)] for n, ms, c in rows[:20]]
    except Exception as e:  # noqa: BLE001 - best effort by design
        return {"error": f"{type(e).__name__}: {e}"}


if __name__ == "__main__":
    main()
