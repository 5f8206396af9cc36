#!/usr/bin/env python3
"""The reference way to measure rate-distortion curves, in python3-torch: for every Conv2d/Linear
layer and every level, prune that layer alone by magnitude and run the whole network on the
calibration batch. Also writes the TorchScript model both sides measure.

  curves_reference.py --export PATH           write the benchmark's TorchScript CNN
  curves_reference.py --model PATH --data D   time the reference loop; prints JSON
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.down(x))


class ResNet(nn.Module):
    """A ResNet-20-sized network written in PyTorch, as a user would bring it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            layers.append(nn.Sequential(Block(cin, cout, stride), Block(cout, cout, 1), Block(cout, cout, 1)))
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def levels_for(weights, steps):
    """rdprune's levels for a dense layer: the grid k/steps, the one-weight level, kept counts
    floor((1 - s) * n) with repeated counts measured once."""
    kept = []
    for k in range(steps + 1):
        count = int(math.floor((1 - k / steps) * weights + 1e-9))
        if k == steps and kept and kept[-1] > 1:
            kept.append(1)
        kept.append(count)
    out = []
    for count in kept:
        if not out or out[-1] != count:
            out.append(count)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--export")
    parser.add_argument("--model")
    parser.add_argument("--data")
    parser.add_argument("--levels", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.export:
        torch.manual_seed(0)
        torch.jit.save(torch.jit.script(ResNet().eval()), args.export)
        return
    model = torch.jit.load(args.model).eval()
    x = torch.load(args.data)["x"].float()
    layers = [m for _, m in model.named_modules() if m.original_name in ("Conv2d", "Linear")]
    start = time.perf_counter()
    forwards = 0
    with torch.no_grad():
        reference = model(x)
        for module in layers:
            saved = module.weight.clone()
            order = torch.sort(saved.abs().flatten(), stable=True).indices
            for kept in levels_for(saved.numel(), args.levels)[1:]:
                flat = saved.clone().view(-1)
                flat[order[:saved.numel() - kept]] = 0
                module.weight.copy_(flat.view_as(saved))
                out = model(x)
                p = F.log_softmax(reference, 1)
                (p.exp() * (p - F.log_softmax(out, 1))).sum(1).mean().item()
                forwards += 1
            module.weight.copy_(saved)
    print(json.dumps({"seconds": time.perf_counter() - start, "forwards": forwards}))


if __name__ == "__main__":
    main()
