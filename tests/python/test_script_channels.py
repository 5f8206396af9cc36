#!/usr/bin/env python3
"""Channel pruning of TorchScript CNNs: rdprune finds the channel groups of torchvision's resnet18
and mobilenet_v2, scripted here, on their forward graphs and says why every other layer's channels
stay whole; `prune` with a channel plan writes a TorchScript model that plain PyTorch loads, with
smaller tensors, whose outputs equal the original model's with the removed channels masked (1e-5).
Depthwise convolutions carry a group's channels (mobilenet_v2, shufflenet_v2: their `groups` set in
the smaller model); densenet121's concatenated channels are cut at their offsets in every layer that
reads them, and shufflenet_v2's (shuffled) stay whole. Bad input: a model with no group it can
remove, and a plan made for another graph.
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


def columns_kept(weight, slices, groups, kept):
    """Which inputs of `weight` stay: those of every group slice on its dim 1 whose channel is kept,
    and all others."""
    keep = torch.ones(weight.shape[1], dtype=torch.bool)
    for group, slice in slices:
        removed = torch.ones(groups[group]["channels"], dtype=torch.bool)
        removed[kept[group]] = False
        keep[slice_indices(slice, removed.nonzero().flatten())] = False
    return keep


def slice_indices(slice, channels):
    """The indices along the slice's dim of `channels`."""
    per = slice["per_channel"]
    return (slice["offset"] + channels[:, None] * per + torch.arange(per)[None, :]).flatten()


def layer_slices(groups, weight, dim):
    return [(name, slice) for name, group in groups.items() for slice in group["slices"]
            if slice["tensor"] == weight and slice["dim"] == dim]


def masked_outputs(original, groups, smaller, x):
    """The original model with every removed channel masked: its producers' rows and its readers'
    columns zero (the batch norms between them are left as they are). A group's kept channels are
    found on a producer whose own inputs are known: the model's, or groups' already matched."""
    with torch.no_grad():
        kept = {}
        while len(kept) < len(groups):
            progress = False
            for name, group in groups.items():
                for producer in group["producers"] if name not in kept else []:
                    weight = producer + ".weight"
                    reads = layer_slices(groups, weight, 1)
                    if any(g not in kept for g, _ in reads):
                        continue
                    full = tensor(original, weight)
                    full = full[:, columns_kept(full, reads, groups, kept)]
                    kept[name] = kept_rows(full, tensor(smaller, weight))
                    progress = True
                    break
            check(progress, "every group's kept channels can be matched")
        for name, group in groups.items():
            removed = torch.ones(group["channels"], dtype=torch.bool)
            removed[kept[name]] = False
            for slice in group["slices"]:
                layer = slice["tensor"][:-len(".weight")]
                if layer in group["producers"] + group["readers"] and slice["tensor"].endswith(".weight"):
                    index = slice_indices(slice, removed.nonzero().flatten())
                    tensor(original, slice["tensor"]).index_fill_(slice["dim"], index, 0)
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
    # Every sliced tensor lost the removed channels of every group it holds (several where it reads
    # a concatenation).
    removed = {}
    for name, group in groups.items():
        for slice in group["slices"]:
            where = (slice["tensor"], slice["dim"])
            removed[where] = removed.get(where, 0) + (group["channels"] - kept[name]) * slice["per_channel"]
    for (where, dim), count in removed.items():
        check(tensor(smaller, where).shape[dim] == tensor(original, where).shape[dim] - count,
              f"{where}: {count} indices removed along dim {dim}")
    check(any(kept[g] < group["channels"] for g, group in groups.items()), "some channel removed")
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
    return {g["name"]: g for g in found["channel_groups"]}


def scripted_groups(binary, name, count, directory, generator):
    """torchvision's `name` scripted, what info finds in it, and its `count` groups by name."""
    path = script(name, directory, generator)
    found = info(binary, path)
    got = groups_of(found)
    check(len(got) == count, f"{name}: {len(got)} groups")
    return path, found, got


def layers_of(groups):
    return {name: (g["producers"], g["readers"]) for name, g in groups.items()}


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


class Concatenations(torch.nn.Module):
    """a's channels are appended to the model's input and concatenated: the batch norm and the
    convolution d after the concatenation read them at offset 3, after the input's 3 channels, which
    stay whole. b's channels are put in a list for torch.stack, c's concatenated along the height,
    e's concatenated with themselves after a relu: all stay whole."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn_a = torch.nn.BatchNorm2d(8)
        self.bn_y = torch.nn.BatchNorm2d(11)
        self.d = torch.nn.Conv2d(11, 6, 3, padding=1)
        self.b = torch.nn.Conv2d(3, 6, 1)
        self.c = torch.nn.Conv2d(3, 6, 1)
        self.fc = torch.nn.Linear(6, 10)
        self.e = torch.nn.Conv2d(3, 4, 1)
        self.f = torch.nn.Conv2d(8, 2, 1)

    def forward(self, x):
        parts = [x]
        parts.append(torch.relu(self.bn_a(self.a(x))))
        y = torch.cat(parts, 1)
        d = self.d(torch.relu(self.bn_y(y)))
        b = self.b(x)
        s = torch.stack([b, b]).sum(0)
        c = self.c(x)
        t = torch.cat([c, c], 2)
        e = self.e(x)
        u = self.f(torch.cat([e, torch.relu(e)], 1))
        return self.fc(d.mean([2, 3])) + s.mean() + t.mean() + u.mean()


def check_concatenations(binary, directory, generator):
    model = Concatenations()
    randomise_batch_norms(model, generator)
    path = os.path.join(directory, "concatenations.ts.pt")
    torch.jit.script(model.eval()).save(path)
    found = info(binary, path)
    got = groups_of(found)
    check(layers_of(got) == {"a": (["a"], ["d"]), "d": (["d"], ["fc"])}, f"concatenations: {got}")
    check({(sl["tensor"], sl["offset"]) for sl in got["a"]["slices"] if sl["dim"] == 1 or "bn_y" in sl["tensor"]} ==
          {("d.weight", 3)} | {("bn_y." + t, 3) for t in ("weight", "bias", "running_mean", "running_var")},
          f"concatenations: {got['a']['slices']}")
    check(sorted(found["channels_kept_whole"]) ==
          ["b: put in a list read by aten::stack", "c: concatenated along another axis than the channels'",
           "e: its channels meet a copy of themselves at another position",
           "f: read by aten::mean, which this analysis does not follow", "fc: its channels are the model's outputs"], f"concatenations: {found['channels_kept_whole']}")
    plan = prune_and_compare(binary, path, "uniform", 0.3, got)
    costs = {layer["layer"]: layer for layer in json.load(open(plan))["channel_costs"]}
    check(costs["d"].get("in_groups") == ["a"] and costs["d"].get("in_whole") == 3, f"costs of d: {costs['d']}")
    # Under a latency budget d is timed over its whole input width, the model's 3 channels and a's 8.
    timed = rdprune(binary, "allocate", "--method", "uniform", "--granularity", "channel", "--model", path,
                    "--input-shape", ",".join(map(str, SHAPE)), "--budget", "latency", "--sparsity", "0",
                    "--latency-batch", "2", "--latency-grid", "3", "--no-cache", "--out", plan + ".latency.json")
    check(timed.returncode == 0, f"latency plan: {timed.stderr}")
    costs = {layer["layer"]: layer for layer in json.load(open(plan + ".latency.json"))["channel_costs"]}
    check(costs["d"]["latency"]["in_widths"] == [1, 6, 11], f"d's latency table: {costs['d']['latency']}")


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
        check({k: (sorted(p), sorted(r)) for k, (p, r) in layers_of(got).items()} ==
              {k: (sorted(p), sorted(r)) for k, (p, r) in expected.items()}, f"resnet18 groups: {got}")
        check(found["channels_kept_whole"] == ["fc: its channels are the model's outputs"],
              f"resnet18: {found['channels_kept_whole']}")
        resnet_plan = prune_and_compare(binary, resnet, "uniform", 0.3, got)

        mobilenet = script("mobilenet_v2", directory, generator)
        found = info(binary, mobilenet)
        got = groups_of(found)
        layers = layers_of(got)
        # The last 1x1 convolution, read by the classifier through pooling and a flatten; the
        # channels between blocks: every block without a residual addition starts a group, which
        # the additions of the blocks after it (same width) join; inside every block, the channels
        # of its expansion (or the stem), carried through the depthwise convolution to the
        # projection. 1 + 7 + 17 groups; only the classifier's outputs stay whole.
        check(len(got) == 25, f"mobilenet: {len(got)} groups")
        check(layers["features.18.0"] == (["features.18.0"], ["classifier.1"]), f"mobilenet: {got}")
        check(layers["features.2.conv.2"] == (["features.2.conv.2", "features.3.conv.2"],
                                           ["features.3.conv.0.0", "features.4.conv.0.0"]), f"mobilenet: {got}")
        check(layers["features.0.0"] == (["features.0.0", "features.1.conv.0.0"], ["features.1.conv.1"]),
              f"mobilenet: {got}")
        check(layers["features.5.conv.0.0"] == (["features.5.conv.0.0", "features.5.conv.1.0"], ["features.5.conv.2"]),
              f"mobilenet: {got}")
        check(found["channels_kept_whole"] == ["classifier.1: its channels are the model's outputs"],
              f"mobilenet: {found['channels_kept_whole']}")
        prune_and_compare(binary, mobilenet, "global", 0.3, got)

        # densenet121: every convolution. The stem's, each transition's and each dense layer's
        # second convolution's channels are concatenated with the others of their block and read,
        # at their offset, by the batch norm and first convolution of every later dense layer of the
        # block and by the transition (or the last batch norm and the classifier); each dense
        # layer's bottleneck is read by its second convolution. 1 + 3 + 58 + 58 groups.
        densenet, found, got = scripted_groups(binary, "densenet121", 120, directory, generator)
        check(found["channels_kept_whole"] == ["classifier: its channels are the model's outputs"],
              f"densenet121: {found['channels_kept_whole']}")
        layer = "features.denseblock1.denselayer"
        grown = got[layer + "1.conv2"]
        check((grown["producers"], sorted(grown["readers"])) ==
              ([layer + "1.conv2"], sorted([f"{layer}{i}.conv1" for i in range(2, 7)] + ["features.transition1.conv"])),
              f"densenet121: {grown}")
        # After the stem's 64 channels: offset 64 everywhere it is read.
        check({(sl["tensor"], sl["offset"]) for sl in grown["slices"] if sl["tensor"].startswith(layer + "3.")} ==
              {(layer + "3.norm1." + t, 64) for t in ("weight", "bias", "running_mean", "running_var")} |
              {(layer + "3.conv1.weight", 64)}, f"densenet121: {grown['slices']}")
        last = got["features.denseblock4.denselayer16.conv2"]
        check(last["readers"] == ["classifier"] and
              any(sl["tensor"] == "features.norm5.weight" and sl["offset"] == 1024 - 32 for sl in last["slices"]),
              f"densenet121: {last}")
        prune_and_compare(binary, densenet, "uniform", 0.3, got)

        # shufflenet_v2: the stem (carried through the first block's depthwise convolution), the
        # first 1x1 convolution of every block's second branch (carried through its depthwise
        # convolution) and the last 1x1 convolution, read by the classifier after a mean over the
        # map; the blocks' outputs are concatenated and shuffled, and stay whole, and so do the
        # depthwise convolutions that read them.
        shufflenet, found, got = scripted_groups(binary, "shufflenet_v2_x0_5", 18, directory, generator)
        check("depthwise" in "\n".join(found["channels_kept_whole"]), f"shufflenet: {found['channels_kept_whole']}")
        prune_and_compare(binary, shufflenet, "uniform", 0.05, got)

        check_concatenations(binary, directory, generator)

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
