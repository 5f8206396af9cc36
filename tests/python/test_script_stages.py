#!/usr/bin/env python3
"""Suffix execution on TorchScript models: rdprune cuts the inlined forward graph where one tensor
carries everything the rest needs. For models a PyTorch user writes (residual blocks with in-place
adds, a layer called twice far apart, one registered under two names, data-dependent control flow),
scripted and traced, every curve point of the fast path must equal the plain loop's (`--plain`, a
full forward per layer and level), with levels run one at a time and batched together, and `info`
must report the stages it found."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F


class Residual(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = self.short(x)  # x itself when the shortcut is empty
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity.mul_(0.5)  # then writes into the stage's input
        out += identity
        return out.relu_()


class ResNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.blocks = nn.Sequential(Residual(8, 8, 1), Residual(8, 16, 2), Residual(16, 16, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class CalledTwice(nn.Module):
    """`shared` runs near the start and again near the end; `alias` names the first conv again, and
    forward calls it under that name."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(1, 8, 3, padding=1)
        self.alias = self.first
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.middle = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 7 * 7, 10)

    def forward(self, x):
        x = F.relu(self.alias(x))
        x = F.relu(self.shared(x))
        x = F.max_pool2d(F.relu(self.middle(x)), 2)
        x = F.max_pool2d(F.relu(self.shared(x)), 2)
        return self.fc(x.flatten(1))


class Branchy(nn.Module):
    """Control flow on the data and a value that skips a layer."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        x = self.a(x)
        if bool(x.mean() > 0):
            y = self.b(x)
        else:
            y = -self.b(x)
        z = self.c(F.relu(y)) + x
        return self.fc(z.flatten(1))


def run(args, *flags):
    result = subprocess.run([args.rdprune, *flags, "--json"], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"rdprune {' '.join(flags)} failed: {result.stderr.strip()}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_model(args, work, name, module, traced, min_stages):
    torch.manual_seed(0)
    module = module.eval()
    # Non-trivial batch-norm statistics, so that pruning moves every output.
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    example = torch.randn(2, 1, 28, 28)
    scripted = torch.jit.trace(module, example) if traced else torch.jit.script(module)
    path = os.path.join(work, f"{name}.pt")
    torch.jit.save(scripted, path)
    label = f"{name} ({'traced' if traced else 'scripted'})"

    info = run(args, "info", "--model", path)
    stages = [layer["stage"] for layer in info["layers"]]
    if info["stages"] < min_stages:
        sys.exit(f"{label}: {info['stages']} stages, expected at least {min_stages}")
    if not all(0 <= stage < info["stages"] for stage in stages):
        sys.exit(f"{label}: layer stages {stages} outside 0..{info['stages'] - 1}")

    curves = {}
    for mode, flags in (("plain", ["--plain"]), ("fast", []), ("batched", ["--level-batch", "3"])):
        out = os.path.join(work, f"{name}-{mode}.json")
        run(args, "curves", "--model", path, "--dataset", "tensors", "--data-dir", args.calib, "--calib-size",
            "20", "--batch-size", "8", "--levels", "4", "--no-tail", "--no-cache", "--out", out, *flags)
        with open(out) as f:
            curves[mode] = json.load(f)["layers"]
    for mode in ("fast", "batched"):
        for plain, fast in zip(curves["plain"], curves[mode]):
            for k, (p, q) in enumerate(zip(plain["distortion"], fast["distortion"])):
                if abs(p - q) > 1e-6 * (1 + abs(p)):
                    sys.exit(f"{label} {mode}: {plain['name']} level {k}: {q} != plain {p}")
    moved = sum(1 for layer in curves["plain"] if layer["distortion"][-1] > 0)
    if moved < len(curves["plain"]) - 1:
        sys.exit(f"{label}: only {moved} layers move the output; the check would be vacuous")
    print(f"ok {label}: {info['stages']} stages, layer stages {stages}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rdprune", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as work:
        args.calib = os.path.join(work, "calib.pt")
        torch.save({"x": torch.randn(20, 1, 28, 28), "y": torch.randint(0, 10, (20,))}, args.calib)
        for traced in (False, True):
            check_model(args, work, "resnet_like", ResNetLike(), traced, min_stages=8)
            check_model(args, work, "called_twice", CalledTwice(), traced, min_stages=2)
        check_model(args, work, "branchy", Branchy(), False, min_stages=2)
    print("ok")


if __name__ == "__main__":
    main()
