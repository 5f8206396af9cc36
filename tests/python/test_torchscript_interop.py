#!/usr/bin/env python3
"""TorchScript interop: a model trained and scripted in PyTorch gives rdprune the same top-1 as
PyTorch's own evaluation, and `rdprune info` names its layers as PyTorch's named_modules() does;
rd's flow runs on it, and its batch norms recalibrate to PyTorch's cumulative average.

Runs with Debian's python3-torch (same 1.13 as the LibTorch rdprune links). Uses the Fashion-MNIST
files of Debian's dataset-fashion-mnist package when present, else small generated IDX files.
"""
import argparse
import copy
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

FASHION = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return torch.frombuffer(bytearray(data[4 + 4 * rank:]), dtype=torch.uint8).reshape(dims)


def write_idx(path, tensor):
    header = bytes([0, 0, 8, tensor.dim()]) + struct.pack(">" + "I" * tensor.dim(), *tensor.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + tensor.contiguous().numpy().tobytes())


def make_dataset(directory):
    """Ten learnable classes: a bright square whose position encodes the label."""
    g = torch.Generator().manual_seed(0)
    for prefix, count in (("train", 2000), ("t10k", 1000)):
        labels = torch.randint(0, 10, (count,), generator=g, dtype=torch.int64)
        images = torch.randint(0, 60, (count, 28, 28), generator=g, dtype=torch.int64)
        for i, label in enumerate(labels.tolist()):
            r, c = (label // 4) * 7, (label % 4) * 7
            images[i, r:r + 7, c:c + 7] = 220
        write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), images.to(torch.uint8))
        write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), labels.to(torch.uint8))


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)


class SmallNet(nn.Module):
    """Nested containers on purpose: layer names like features.1.conv."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(Block(1, 8), Block(8, 16))
        self.head = nn.ModuleDict({"hidden": nn.Linear(16 * 7 * 7, 32), "out": nn.Linear(32, 10)})

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.head["out"](F.relu(self.head["hidden"](x)))


def normalise(images):
    return ((images.float() / 255.0) - MEAN) / STD


def run(args):
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rdprune", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = FASHION if os.path.isdir(FASHION) else tmp
        if data_dir == tmp:
            make_dataset(tmp)
        ext = ".gz" if os.path.exists(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")) else ""
        train_x = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte" + ext))[:4000]
        train_y = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte" + ext))[:4000].long()
        test_x = read_idx(os.path.join(data_dir, "t10k-images-idx3-ubyte" + ext))[:1000]
        test_y = read_idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte" + ext))[:1000].long()

        model = SmallNet()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        model.train()
        for step in range(60):
            index = torch.randint(0, train_x.shape[0], (64,))
            loss = F.cross_entropy(model(normalise(train_x[index]).unsqueeze(1)), train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(normalise(test_x).unsqueeze(1))
        top1_python = (logits.argmax(1) == test_y).sum().item() / test_y.numel()
        loss_python = F.cross_entropy(logits, test_y).item()

        path = os.path.join(tmp, "small.pt")
        torch.jit.save(torch.jit.script(model), path)

        evaluated = run([args.rdprune, "eval", "--model", path, "--dataset", "fashion-mnist",
                         "--data-dir", data_dir, "--limit", "1000", "--json", "--threads", "2"])
        assert evaluated["samples"] == 1000, evaluated
        assert abs(evaluated["top1"] - top1_python) <= 1e-9, (evaluated["top1"], top1_python)
        assert abs(evaluated["loss"] - loss_python) < 1e-4, (evaluated["loss"], loss_python)
        assert top1_python > 0.5, f"the PyTorch model did not learn (top-1 {top1_python})"

        info = run([args.rdprune, "info", "--model", path, "--input-shape", "1,28,28", "--json"])
        expected = [(name, list(m.weight.shape)) for name, m in model.named_modules()
                    if isinstance(m, (nn.Conv2d, nn.Linear))]
        got = [(layer["name"], layer["shape"]) for layer in info["layers"]]
        assert got == expected, (got, expected)
        flops = [layer["flops_per_weight"] for layer in info["layers"]]
        assert flops == [28 * 28, 14 * 14, 1, 1], flops
        assert info["format"] == "torchscript"

        traced_path = os.path.join(tmp, "traced.pt")
        torch.jit.save(torch.jit.trace(model, torch.zeros(1, 1, 28, 28)), traced_path)
        traced = run([args.rdprune, "eval", "--model", traced_path, "--data-dir", data_dir,
                      "--limit", "1000", "--json"])
        assert abs(traced["top1"] - top1_python) <= 1e-9, (traced["top1"], top1_python)
        traced_info = run([args.rdprune, "info", "--model", traced_path, "--input-shape", "1,28,28", "--json"])
        assert [layer["name"] for layer in traced_info["layers"]] == [n for n, _ in expected]

        # The whole rd flow on the scripted model; the pruned file loads in plain PyTorch.
        curves = os.path.join(tmp, "curves.json")
        run([args.rdprune, "curves", "--model", path, "--data-dir", data_dir, "--calib-size", "64",
             "--levels", "20", "--metric", "mse", "--no-tail", "--no-cache", "--out", curves, "--json"])
        plan_path = os.path.join(tmp, "plan.json")
        run([args.rdprune, "allocate", "--curves", curves, "--sparsity", "0.9", "--out", plan_path, "--json"])
        pruned_path = os.path.join(tmp, "pruned.pt")
        run([args.rdprune, "prune", "--model", path, "--plan", plan_path, "--out", pruned_path, "--json"])
        with open(plan_path) as f:
            plan = json.load(f)
        pruned = torch.jit.load(pruned_path)
        modules = dict(pruned.named_modules())
        for layer in plan["layers"]:
            module = modules[layer["name"]]
            weight, mask = module.weight, module.weight_mask
            assert int((weight != 0).sum()) == layer["kept"], layer
            assert int(mask.sum()) == layer["kept"], layer
            assert bool(((weight != 0) <= mask).all()), layer
        pruned_info = run([args.rdprune, "info", "--model", pruned_path, "--input-shape", "1,28,28", "--json"])
        assert abs(pruned_info["sparsity"] - plan["sparsity_achieved"]) < 1e-9, pruned_info
        # Curve points against a plain PyTorch loop: every level of the first and the last layer,
        # each pruned alone by magnitude (stable sort: ties by index) with a full forward pass.
        with open(curves) as f:
            layers = json.load(f)["layers"]
        calib = normalise(read_idx(os.path.join(data_dir, "train-images-idx3-ubyte" + ext))[:64]).unsqueeze(1)
        named = dict(model.named_modules())
        checked = 0
        with torch.no_grad():
            reference = model(calib).double()
            for curve in (layers[0], layers[-1]):
                module = named[curve["name"]]
                saved = module.weight.clone()
                order = torch.sort(saved.abs().flatten().double(), stable=True).indices
                for kept, wanted in zip(curve["kept"], curve["distortion"]):
                    flat = saved.clone().view(-1)
                    flat[order[:saved.numel() - kept]] = 0
                    module.weight.copy_(flat.view_as(saved))
                    distortion = (model(calib).double() - reference).pow(2).mean().item()
                    assert abs(distortion - wanted) <= 1e-5 * (1 + distortion), (curve["name"], kept, distortion, wanted)
                    checked += 1
                module.weight.copy_(saved)
        assert checked == 2 * 22, checked  # 21 grid levels and the one-weight level

        # Batch-norm recalibration of the scripted model, whose momentum (0.1) is a constant of its
        # code: the statistics rdprune writes are PyTorch's cumulative average (momentum None) over
        # the same first 320 training images, in batches of 128 (the last one short).
        recal_path = os.path.join(tmp, "recalibrated.pt")
        run([args.rdprune, "finetune", "--model", path, "--steps", "0", "--bn-recalibrate", "--calib-size", "320",
             "--data-dir", data_dir, "--out", recal_path, "--json"])
        recalibrated = dict(torch.jit.load(recal_path).named_modules())
        reference = copy.deepcopy(model)
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None
        reference.train()
        images = normalise(train_x[:320]).unsqueeze(1)
        with torch.no_grad():
            for begin in range(0, 320, 128):
                reference(images[begin:begin + 128])
        norms = 0
        for name, module in reference.named_modules():
            if not isinstance(module, nn.BatchNorm2d):
                continue
            for statistic in ("running_mean", "running_var"):
                got, wanted = getattr(recalibrated[name], statistic), getattr(module, statistic)
                before = getattr(dict(model.named_modules())[name], statistic)
                assert torch.allclose(got, wanted, rtol=1e-4, atol=1e-5), (name, statistic, got, wanted)
                assert (before - wanted).abs().max() > 1e-2, (name, statistic, "recalibration changed nothing")
            norms += 1
        assert norms == 2, norms

        # A batch norm with momentum None averages by itself (reset only); one run twice in a
        # forward pass mixes its statistics and is refused, by name.
        class Twice(nn.Module):
            def __init__(self, momentum):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3, padding=1)
                self.bn = nn.BatchNorm2d(4, momentum=momentum)
                self.head = nn.Linear(4, 10)

            def forward(self, x):
                x = self.bn(self.conv(x))
                return self.head(x.mean([2, 3]))

        cumulative = Twice(None)
        cumulative_path = os.path.join(tmp, "cumulative.pt")
        torch.jit.save(torch.jit.script(cumulative), cumulative_path)
        run([args.rdprune, "finetune", "--model", cumulative_path, "--steps", "0", "--bn-recalibrate",
             "--calib-size", "320", "--data-dir", data_dir, "--out", recal_path, "--json"])
        cumulative.train()
        with torch.no_grad():
            for begin in range(0, 320, 128):
                cumulative(images[begin:begin + 128])
        got = torch.jit.load(recal_path).bn
        assert torch.allclose(got.running_mean, cumulative.bn.running_mean, rtol=1e-4, atol=1e-5)
        assert torch.allclose(got.running_var, cumulative.bn.running_var, rtol=1e-4, atol=1e-5)

        class Reused(Twice):
            def forward(self, x):
                x = self.bn(self.bn(self.conv(x)))
                return self.head(x.mean([2, 3]))

        reused_path = os.path.join(tmp, "reused.pt")
        torch.jit.save(torch.jit.script(Reused(0.1)), reused_path)
        refused = subprocess.run([args.rdprune, "finetune", "--model", reused_path, "--steps", "0",
                                  "--bn-recalibrate", "--data-dir", data_dir, "--out", recal_path],
                                 capture_output=True, text=True)
        assert refused.returncode == 1 and "batch norm bn runs 2 times" in refused.stderr, refused.stderr

    print(f"torchscript interop: top-1 {top1_python:.4f} in PyTorch and rdprune; "
          f"{len(expected)} layers named alike")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
