#!/usr/bin/env python3
"""Channel pruning of TorchScript CNNs: rdprune finds the channel groups of torchvision's resnet18
and mobilenet_v2, scripted here, on their forward graphs and says why every other layer's channels
stay whole; `prune` with a channel plan writes a TorchScript model that plain PyTorch loads, with
smaller tensors, whose outputs equal the original model's with the removed channels masked (1e-5).
Bad input: a model with no group it can remove, and a plan made for another graph.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

try:
    import torchvision
except ImportError:
    print("skipped: python3-torchvision is not installed")
    sys.exit(77)

SHAPE = (3, 32, 32)


def rdprune(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True)


def check(condition, message):
    if not condition:
        print("FAIL:", message)
        sys.exit(1)


def randomise_batch_norms(model, generator):
    """Batch norms with statistics and scales of their own, so a removed channel's shift matters."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.5 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.2 * torch.randn(n, generator=generator))


def tensor(module, path):
    for name in path.split("."):
        module = getattr(module, name)
    return module


def kept_rows(full, smaller):
    """The rows of `full` that `smaller` kept, in order (each found exactly)."""
    full, smaller = full.flatten(1).double(), smaller.flatten(1).double()
    direction = torch.randn(full.shape[1], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    index = ((full @ direction)[:, None] - (smaller @ direction)[None, :]).abs().argmin(0)
    check(torch.equal(full[index], smaller), "the smaller model's rows are not rows of the original")
    return index


def masked_outputs(original, groups, smaller, x):
    """The original model with every removed channel masked: its producer's rows and every
    reader's columns zero (the batch norm between them is left as it is). Groups come in forward
    order, so a producer that also reads an earlier group is matched on that group's kept inputs."""
    with torch.no_grad():
        kept = {}
        for producer in groups:
            full = tensor(original, producer + ".weight")
            for earlier, readers in groups.items():
                if producer in readers and earlier in kept:
                    full = full[:, kept[earlier]]
            kept[producer] = kept_rows(full, tensor(smaller, producer + ".weight"))
        for producer, readers in groups.items():
            full = tensor(original, producer + ".weight")
            removed = torch.ones(full.shape[0], dtype=torch.bool)
            removed[kept[producer]] = False
            full[removed] = 0
            for reader in readers:
                tensor(original, reader + ".weight")[:, removed] = 0
        return original(x)


def script(name, directory, generator):
    model = getattr(torchvision.models, name)(num_classes=10)
    randomise_batch_norms(model, generator)
    model.eval()
    path = os.path.join(directory, name + ".ts.pt")
    torch.jit.script(model).save(path)
    return path


def info(binary, path):
    result = rdprune(binary, "info", "--model", path, "--input-shape", ",".join(map(str, SHAPE)), "--json")
    check(result.returncode == 0, f"info {path}: {result.stderr}")
    return json.loads(result.stdout)


def prune_and_compare(binary, directory, path, method, sparsity, groups):
    plan = path + f".{method}.plan.json"
    allocated = rdprune(binary, "allocate", "--method", method, "--granularity", "channel", "--model", path,
                        "--input-shape", ",".join(map(str, SHAPE)), "--budget", "flops", "--sparsity",
                        str(sparsity), "--out", plan, "--json")
    check(allocated.returncode == 0, f"allocate {path}: {allocated.stderr}")
    smaller_path = path.replace(".ts.pt", f".{method}.smaller.ts.pt")
    pruned = rdprune(binary, "prune", "--model", path, "--plan", plan, "--out", smaller_path, "--json")
    check(pruned.returncode == 0, f"prune {path}: {pruned.stderr}")
    check(json.loads(pruned.stdout)["flops_removed"] >= sparsity - 1e-9, "the FLOPs budget is kept")
    smaller = torch.jit.load(smaller_path).eval()
    original = torch.jit.load(path).eval()
    kept = {layer["name"]: layer["kept"] for layer in json.load(open(plan))["layers"]}
    for producer, readers in groups.items():
        check(tensor(smaller, producer + ".weight").shape[0] == kept[producer], f"{producer}: kept rows")
        for reader in readers:
            check(tensor(smaller, reader + ".weight").shape[1] == kept[producer], f"{reader}: kept columns")
    check(any(kept[p] < tensor(original, p + ".weight").shape[0] for p in groups), "some channel removed")
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = masked_outputs(original, groups, smaller, x)
        got = smaller(x)
    error = (got - expected).abs().max().item() / max(1.0, expected.abs().max().item())
    check(error <= 1e-5, f"{path}: smaller model's outputs differ from the masked model's by {error}")
    print(f"{os.path.basename(path)} {method}: {len(groups)} groups, outputs match to {error:.2e}")
    return plan


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rdprune", required=True)
    binary = parser.parse_args().rdprune
    generator = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as directory:
        resnet = script("resnet18", directory, generator)
        found = info(binary, resnet)
        resnet_groups = {f"layer{s}.{b}.conv1": [f"layer{s}.{b}.conv2"] for s in range(1, 5) for b in range(2)}
        check({g["name"]: g["readers"] for g in found["channel_groups"]} == resnet_groups,
              f"resnet18 groups: {found}")
        whole = "\n".join(found["channels_kept_whole"])
        check("layer1.0.conv2: read by aten::add_" in whole, "a residual addition is named: " + whole)
        check("fc: its channels are the model's outputs" in whole, "the classifier's outputs: " + whole)
        resnet_plan = prune_and_compare(binary, directory, resnet, "uniform", 0.3, resnet_groups)

        mobilenet = script("mobilenet_v2", directory, generator)
        found = info(binary, mobilenet)
        # The last convolutions of two blocks without a residual connection, and the last 1x1
        # convolution, read by the classifier through pooling and a flatten.
        mobilenet_groups = {"features.1.conv.1": ["features.2.conv.0.0"],
                            "features.17.conv.2": ["features.18.0"], "features.18.0": ["classifier.1"]}
        check({g["name"]: g["readers"] for g in found["channel_groups"]} == mobilenet_groups,
              f"mobilenet groups: {found}")
        check("depthwise" in "\n".join(found["channels_kept_whole"]), "depthwise convolutions are named")
        prune_and_compare(binary, directory, mobilenet, "global", 0.05, mobilenet_groups)

        # A plan made for another graph is refused, naming both.
        wrong = rdprune(binary, "prune", "--model", mobilenet, "--plan", resnet_plan, "--out",
                        os.path.join(directory, "wrong.ts.pt"))
        check(wrong.returncode == 1 and "channel groups" in wrong.stderr, f"wrong plan: {wrong.stderr}")
        # A model whose channels all stay whole: a usage error that says why.
        linear = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)))
        linear_path = os.path.join(directory, "linear.ts.pt")
        linear.save(linear_path)
        none = rdprune(binary, "allocate", "--method", "uniform", "--granularity", "channel", "--model",
                       linear_path, "--sparsity", "0.5", "--out", os.path.join(directory, "none.json"))
        check(none.returncode == 2 and "no channel groups" in none.stderr and "model's outputs" in none.stderr,
              f"no groups: {none.stderr}")
    print("ok")


if __name__ == "__main__":
    main()
