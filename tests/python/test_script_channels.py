#!/usr/bin/env python3
"""Channel pruning of TorchScript CNNs: rdprune finds the channel groups of torchvision's resnet18
and mobilenet_v2, scripted here, on their forward graphs and says why every other layer's channels
stay whole; `prune` with a channel plan writes a TorchScript model that plain PyTorch loads, with
smaller tensors, whose outputs equal the original model's with the removed channels masked (1e-5).
Depthwise convolutions carry a group's channels (mobilenet_v2, shufflenet_v2: their `groups` set in
the smaller model); densenet121 and shufflenet_v2 keep their concatenated channels whole. Bad input: a model with no group it can remove, and a plan made for another graph.
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
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
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
    """The original model with every removed channel masked: its producers' rows and its readers'
    columns zero (the batch norms between them are left as they are). A group's kept channels are
    found on a producer whose own inputs are known: the model's, or a group's already matched."""
    with torch.no_grad():
        kept = {}
        while len(kept) < len(groups):
            progress = False
            for name, (producers, _) in groups.items():
                for producer in producers if name not in kept else []:
                    reads = [g for g, (_, readers) in groups.items() if producer in readers]
                    if any(g not in kept for g in reads):
                        continue
                    full = tensor(original, producer + ".weight")
                    for g in reads:
                        full = full[:, kept[g]]
                    kept[name] = kept_rows(full, tensor(smaller, producer + ".weight"))
                    progress = True
                    break
            check(progress, "every group's kept channels can be matched")
        for name, (producers, readers) in groups.items():
            removed = torch.ones(tensor(original, producers[0] + ".weight").shape[0], dtype=torch.bool)
            removed[kept[name]] = False
            for producer in producers:
                tensor(original, producer + ".weight")[removed] = 0
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


def prune_and_compare(binary, path, method, sparsity, groups):
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
    for name, (producers, readers) in groups.items():
        for producer in producers:
            check(tensor(smaller, producer + ".weight").shape[0] == kept[name], f"{producer}: kept rows")
        for reader in readers:
            check(tensor(smaller, reader + ".weight").shape[1] == kept[name], f"{reader}: kept columns")
    check(any(kept[g] < tensor(original, p[0][0] + ".weight").shape[0] for g, p in groups.items()),
          "some channel removed")
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        dense = original(x)
        expected = masked_outputs(original, groups, smaller, x)
        got = smaller(x)
    check((dense - expected).abs().max().item() > 1e-3 * expected.abs().max().item(),
          f"{path}: the removed channels changed nothing, so the comparison would prove nothing")
    scale = expected.abs().max().item()
    check(scale > 1e-3, f"{path}: outputs of scale {scale} would hide any difference")
    error = (got - expected).abs().max().item() / scale
    check(error <= 1e-5, f"{path}: smaller model's outputs differ from the masked model's by {error}")
    print(f"{os.path.basename(path)} {method}: {len(groups)} groups, outputs match to {error:.2e}")
    return plan


def groups_of(found):
    return {g["name"]: (g["producers"], g["readers"]) for g in found["channel_groups"]}


def resnet18_groups():
    """Inside each block, conv1's channels (read by conv2); each stage's channels, tied by its
    residual additions: made by the stem (or the stage's first block's downsample) and every block's
    conv2, read by every block's conv1 and the next stage's first block (or the classifier)."""
    groups = {f"layer{s}.{b}.conv1": ([f"layer{s}.{b}.conv1"], [f"layer{s}.{b}.conv2"])
              for s in range(1, 5) for b in range(2)}
    for s in range(1, 5):
        first = "conv1" if s == 1 else f"layer{s}.0.conv2"
        producers = ["conv1", "layer1.0.conv2", "layer1.1.conv2"] if s == 1 else \
            [f"layer{s}.0.conv2", f"layer{s}.0.downsample.0", f"layer{s}.1.conv2"]
        readers = [f"layer{s}.{b}.conv1" for b in range(1 if s > 1 else 0, 2)]
        readers += [f"layer{s + 1}.0.conv1", f"layer{s + 1}.0.downsample.0"] if s < 4 else ["fc"]
        groups[first] = (producers, readers)
    return groups


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rdprune", required=True)
    binary = parser.parse_args().rdprune
    generator = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as directory:
        resnet = script("resnet18", directory, generator)
        found = info(binary, resnet)
        expected = resnet18_groups()
        got = groups_of(found)
        check({k: (sorted(p), sorted(r)) for k, (p, r) in got.items()} ==
              {k: (sorted(p), sorted(r)) for k, (p, r) in expected.items()}, f"resnet18 groups: {got}")
        check(found["channels_kept_whole"] == ["fc: its channels are the model's outputs"],
              f"resnet18: {found['channels_kept_whole']}")
        resnet_plan = prune_and_compare(binary, resnet, "uniform", 0.3, got)

        mobilenet = script("mobilenet_v2", directory, generator)
        found = info(binary, mobilenet)
        got = groups_of(found)
        # The last 1x1 convolution, read by the classifier through pooling and a flatten; the
        # channels between blocks: every block without a residual addition starts a group, which
        # the additions of the blocks after it (same width) join; inside every block, the channels
        # of its expansion (or the stem), carried through the depthwise convolution to the
        # projection. 1 + 7 + 17 groups; only the classifier's outputs stay whole.
        check(len(got) == 25, f"mobilenet: {len(got)} groups")
        check(got["features.18.0"] == (["features.18.0"], ["classifier.1"]), f"mobilenet: {got}")
        check(got["features.2.conv.2"] == (["features.2.conv.2", "features.3.conv.2"],
                                           ["features.3.conv.0.0", "features.4.conv.0.0"]), f"mobilenet: {got}")
        check(got["features.0.0"] == (["features.0.0", "features.1.conv.0.0"], ["features.1.conv.1"]),
              f"mobilenet: {got}")
        check(got["features.5.conv.0.0"] == (["features.5.conv.0.0", "features.5.conv.1.0"], ["features.5.conv.2"]),
              f"mobilenet: {got}")
        check(found["channels_kept_whole"] == ["classifier.1: its channels are the model's outputs"],
              f"mobilenet: {found['channels_kept_whole']}")
        prune_and_compare(binary, mobilenet, "global", 0.3, got)

        # densenet121: each dense layer's bottleneck; its outputs are concatenated, and stay whole.
        # shufflenet_v2: the stem (carried through the first block's depthwise convolution), the
        # first 1x1 convolution of every block's second branch (carried through its depthwise
        # convolution) and the last 1x1 convolution, read by the classifier after a mean over the
        # map; the blocks' outputs are concatenated and shuffled, and stay whole, and so do the
        # depthwise convolutions that read them.
        for name, count, kept_whole in (("densenet121", 58, "concatenated with other tensors"),
                                        ("shufflenet_v2_x0_5", 18, "depthwise")):
            path = script(name, directory, generator)
            found = info(binary, path)
            got = groups_of(found)
            check(len(got) == count, f"{name}: {len(got)} groups")
            check(kept_whole in "\n".join(found["channels_kept_whole"]), f"{name}: {found['channels_kept_whole']}")
            prune_and_compare(binary, path, "uniform", 0.05, got)

        # run: a round prunes, fine-tunes the smaller TorchScript model and writes it.
        out = os.path.join(directory, "run")
        run = rdprune(binary, "run", "--model", resnet, "--dataset", "synthetic", "--input-shape",
                      ",".join(map(str, SHAPE)), "--synthetic-size", "64", "--granularity", "channel",
                      "--method", "uniform", "--budget", "flops", "--sparsity", "0.3", "--finetune-steps", "2",
                      "--eval-limit", "16", "--out-dir", out, "--json")
        check(run.returncode == 0, f"run: {run.stderr}")
        check(json.loads(run.stdout)["rounds"][0]["train_steps"] == 2, f"run fine-tuned: {run.stdout}")
        tuned = torch.jit.load(os.path.join(out, "round-1", "model.ts.pt"))
        check(tensor(tuned, "layer1.0.conv1.weight").shape[0] < 64, "run wrote the smaller model")

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
