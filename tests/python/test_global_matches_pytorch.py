#!/usr/bin/env python3
"""`rdprune allocate --method global` keeps, layer by layer, exactly as many weights as PyTorch's
torch.nn.utils.prune.global_unstructured with L1 importance, on a scripted model with nested
modules, and `rdprune prune` zeroes exactly the weights PyTorch's masks remove."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.Conv2d(6, 12, 3))
        self.head = nn.ModuleDict({"hidden": nn.Linear(12 * 22 * 22, 40), "out": nn.Linear(40, 10)})

    def forward(self, x):
        x = F.relu(self.features(x)).flatten(1)
        return self.head["out"](F.relu(self.head["hidden"](x)))


def run(args):
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return json.loads(result.stdout) if result.stdout.strip() else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rdprune", required=True)
    args = parser.parse_args()
    torch.manual_seed(1)
    model = Net().eval()
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    total = sum(m.weight.numel() for _, m in layers)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "net.pt")
        torch.jit.save(torch.jit.script(model), path)
        for sparsity in (0.5, 0.9, 0.97):
            plan_path = os.path.join(tmp, f"plan-{sparsity}.json")
            run([args.rdprune, "allocate", "--method", "global", "--model", path, "--input-shape", "1,28,28",
                 "--sparsity", str(sparsity), "--out", plan_path, "--json"])
            with open(plan_path) as f:
                plan = json.load(f)
            kept = [layer["kept"] for layer in plan["layers"]]
            assert [layer["name"] for layer in plan["layers"]] == [name for name, _ in layers]
            assert sum(kept) == int((1 - sparsity) * total + 1e-9), (sum(kept), sparsity, total)

            reference = Net()
            reference.load_state_dict(model.state_dict())
            prune.global_unstructured([(m, "weight") for _, m in
                                       [(n, dict(reference.named_modules())[n]) for n, _ in layers]],
                                      pruning_method=prune.L1Unstructured, amount=total - sum(kept))
            masks = {name: m.weight_mask for name, m in reference.named_modules() if hasattr(m, "weight_mask")}
            expected = [int(masks[name].sum().item()) for name, _ in layers]
            assert kept == expected, (sparsity, kept, expected)

            pruned_path = os.path.join(tmp, f"pruned-{sparsity}.pt")
            run([args.rdprune, "prune", "--model", path, "--plan", plan_path, "--out", pruned_path, "--json"])
            pruned = torch.jit.load(pruned_path)
            modules = dict(pruned.named_modules())
            for name, _ in layers:
                nonzero = modules[name].weight != 0
                assert torch.equal(nonzero, masks[name].bool()), (sparsity, name)
        print("global allocation matches torch.nn.utils.prune.global_unstructured")


if __name__ == "__main__":
    main()
