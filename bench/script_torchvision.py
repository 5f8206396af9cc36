#!/usr/bin/env python3
"""Scripts a torchvision classifier (random weights: none can be downloaded here; the widths decide
the time) for the channel benchmarks: `python3 bench/script_torchvision.py resnet18 resnet18.ts.pt`.
Batch norms get statistics of their own, as trained ones have."""
import sys

import torch
import torchvision


def main():
    name, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    torch.jit.script(model.eval()).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
