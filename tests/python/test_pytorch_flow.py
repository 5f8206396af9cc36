#!/usr/bin/env python3
"""The Python user's whole flow, training nothing: a small CNN with nested modules built in
python3-torch, scripted (and traced), data passed as torch.save tensor files, `rdprune run --method
rd --sparsity 0.9`, the output loaded back in PyTorch and checked against the plan and against
rdprune's own report; --export-dense; masks held by a later `rdprune finetune`; and the bad inputs
a PyTorch user can bring (no Conv2d/Linear, output that is not 2-D logits, the wrong input shape)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(Block(1, 8), nn.Sequential(Block(8, 16)))
        self.head = nn.ModuleDict({"hidden": nn.Linear(16 * 7 * 7, 32), "out": nn.Linear(32, 10)})

    def forward(self, x):
        return self.head["out"](F.relu(self.head["hidden"](self.features(x).flatten(1))))


class NoPrunable(nn.Module):
    """Parameters, but none that a convolution, linear or matrix product reads as its weight."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(10))

    def forward(self, x):
        return x.flatten(1)[:, :10] * self.scale


class ZeroWeights(nn.Module):
    """A Linear with no weights at all: nothing to prune, so no prunable layer."""

    def __init__(self):
        super().__init__()
        self.empty = nn.Linear(0, 10)

    def forward(self, x):
        return self.empty(x.flatten(1)[:, :0])


class FeatureMap(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 10, 3)

    def forward(self, x):
        return self.conv(x)


class Rgb(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x):
        y = self.fc(x.flatten(1))
        return y, y


def with_nan_weight():
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    with torch.no_grad():
        model[1].weight[3, 5] = float("nan")
    return model


def with_half_mask():
    """A weight_mask of 0.5: neither keep nor prune, so not a mask."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    model[1].register_buffer("weight_mask", torch.full_like(model[1].weight, 0.5))
    return model


class Reuse(nn.Module):
    """One Linear called twice per sample, and one Conv2d registered under two names."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.alias = self.conv
        self.square = nn.Linear(16, 16)
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(F.relu(self.conv(x)), 2).flatten(1)
        return self.out(F.relu(self.square(F.relu(self.square(x)))))


def rdprune(binary, *args, expect=0):
    result = subprocess.run([binary, *args, "--json"], capture_output=True, text=True)
    if result.returncode != expect:
        sys.exit(f"FAIL: rdprune {' '.join(args)} exited {result.returncode}, wanted {expect}: "
                 f"{result.stderr.strip()[-500:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_pruned(path, plan, data_x, data_y, reported_top1):
    model = torch.jit.load(path).eval()
    modules = dict(model.named_modules())
    for layer in plan["layers"]:
        module = modules[layer["name"]]
        assert int((module.weight != 0).sum()) == layer["kept"], layer
        assert int(module.weight_mask.sum()) == layer["kept"], layer
    with torch.no_grad():
        top1 = (model(data_x).argmax(1) == data_y).double().mean().item()
    assert abs(top1 - reported_top1) < 1e-9, (top1, reported_top1)
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rdprune", required=True)
    binary = parser.parse_args().rdprune
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        g = torch.Generator().manual_seed(0)
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        splits = {}
        for split, n in (("train", 256), ("test", 200)):
            x = torch.randn(n, 1, 28, 28, generator=g)
            y = torch.randint(0, 10, (n,), generator=g)
            splits[split] = (x, y)
            torch.save({"x": x, "y": y}, os.path.join(data, f"{split}.pt"))
        test_x, test_y = splits["test"]

        model = SmallCnn().eval()
        with torch.no_grad():  # non-trivial batch-norm statistics, no training
            for block in (model.features[0], model.features[1][0]):
                block.bn.running_mean.uniform_(-0.2, 0.2)
                block.bn.running_var.uniform_(0.5, 2.0)
        exported = {"scripted": torch.jit.script(model), "traced": torch.jit.trace(model, test_x[:2])}
        for kind, module in exported.items():
            path = os.path.join(tmp, f"{kind}.pt")
            torch.jit.save(module, path)
            out = os.path.join(tmp, f"run-{kind}")
            result = rdprune(binary, "run", "--model", path, "--dataset", "tensors", "--data-dir", data,
                             "--method", "rd", "--sparsity", "0.9", "--calib-size", "64", "--levels", "20",
                             "--out-dir", out)
            with open(os.path.join(out, "round-1", "plan.json")) as f:
                plan = json.load(f)
            names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            assert [layer["name"] for layer in plan["layers"]] == names, plan["layers"]
            assert plan["sparsity_achieved"] >= 0.9 - 1e-9, plan["sparsity_achieved"]
            pruned_path = os.path.join(out, "round-1", "model.ts.pt")
            check_pruned(pruned_path, plan, test_x, test_y, result["rounds"][-1]["top1"])

            # A deployment copy without masks, and a fine-tune that holds the masks.
            dense_path = os.path.join(tmp, f"{kind}-dense.pt")
            rdprune(binary, "prune", "--model", path, "--plan", os.path.join(out, "round-1", "plan.json"),
                    "--out", os.path.join(tmp, f"{kind}-again.pt"), "--export-dense", dense_path)
            dense = torch.jit.load(dense_path)
            assert not any(name.endswith("weight_mask") for name, _ in dense.named_buffers()), kind
            pruned = torch.jit.load(pruned_path)
            for (name, a), (_, b) in zip(pruned.named_parameters(), dense.named_parameters()):
                assert torch.equal(a, b), name
            tuned_path = os.path.join(tmp, f"{kind}-tuned.pt")
            rdprune(binary, "finetune", "--model", pruned_path, "--dataset", "tensors", "--data-dir", data,
                    "--steps", "5", "--batch-size", "32", "--lr", "0.1", "--out", tuned_path)
            tuned = dict(torch.jit.load(tuned_path).named_modules())
            changed = False
            for layer in plan["layers"]:
                module = tuned[layer["name"]]
                assert int((module.weight != 0).sum()) <= layer["kept"], layer
                assert bool(((module.weight != 0) <= module.weight_mask).all()), layer
                changed |= not torch.equal(module.weight, dict(pruned.named_modules())[layer["name"]].weight)
            assert changed, "fine-tuning changed no weight"

        # compare and additivity on the scripted model; shared and reused layers reported once.
        scripted = os.path.join(tmp, "scripted.pt")
        compared = rdprune(binary, "compare", "--model", scripted, "--dataset", "tensors", "--data-dir", data,
                           "--methods", "rd,lamp,global", "--sparsities", "0.5,0.8", "--calib-size", "32",
                           "--levels", "10", "--refine", "1", "--out-dir", os.path.join(tmp, "compare"))
        assert len(compared["results"]) == 6, compared
        added = rdprune(binary, "additivity", "--model", scripted, "--dataset", "tensors", "--data-dir", data,
                        "--calib-size", "32", "--levels", "10", "--random", "3", "--sparsities", "0.5,0.8",
                        "--out-dir", os.path.join(tmp, "additivity"))
        assert len(added["points"]) == 5, added
        reuse = os.path.join(tmp, "reuse.pt")
        torch.jit.save(torch.jit.script(Reuse().eval()), reuse)
        info = rdprune(binary, "info", "--model", reuse, "--input-shape", "1,28,28")
        calls = {layer["name"]: layer["calls"] for layer in info["layers"]}
        assert calls == {"conv": 1, "square": 2, "out": 1}, calls
        flops = {layer["name"]: layer["flops_per_weight"] for layer in info["layers"]}
        assert flops["square"] == 2 and flops["conv"] == 28 * 28, flops

        # Bad input: clear one-line errors and exit code 1.
        for name, bad, wanted in (("none", NoPrunable(), "no prunable layers"),
                                  ("identity", torch.nn.Identity(), "no prunable layers"),
                                  ("zero-weights", ZeroWeights(), "no prunable layers"),
                                  ("map", FeatureMap(), "expected [batch, classes] logits"),
                                  ("rgb", Rgb(), "forward pass failed"),
                                  ("tuple", TupleOut(), "model output is a Tuple"),
                                  ("nan", with_nan_weight(), "layer 1 has weights that are NaN"),
                                  ("half-mask", with_half_mask(), "holds values other than 0 and 1")):
            path = os.path.join(tmp, f"bad-{name}.pt")
            torch.jit.save(torch.jit.script(bad), path)
            error = rdprune(binary, "run", "--model", path, "--dataset", "tensors", "--data-dir", data,
                            "--sparsity", "0.5", "--out-dir", os.path.join(tmp, f"bad-{name}"), expect=1)
            assert wanted in error["error"] and "\n" not in error["error"], (name, error)
            if name in ("none", "identity", "zero-weights"):
                continue  # evaluating needs no prunable layer
            # Evaluating names the file once, not once per layer of the code the error went through.
            error = rdprune(binary, "eval", "--model", path, "--dataset", "tensors", "--data-dir", data, expect=1)
            assert wanted in error["error"] and error["error"].count(path) == 1, (name, error)
        # A small file that lacks the last class: its class count is the largest label + 1, which
        # --num-classes overrides for a TorchScript model and a checkpoint's own record supplies.
        few = os.path.join(tmp, "few.pt")
        torch.save({"x": test_x[:20], "y": torch.arange(20) % 9}, few)
        scripted = os.path.join(tmp, "scripted.pt")
        error = rdprune(binary, "eval", "--model", scripted, "--dataset", "tensors", "--data-dir", few, expect=1)
        assert "has 9" in error["error"] and "--num-classes" in error["error"], error
        rdprune(binary, "eval", "--model", scripted, "--dataset", "tensors", "--data-dir", few, "--num-classes", "10")
        native = os.path.join(tmp, "native.pt")
        rdprune(binary, "train", "--arch", "mlp", "--dataset", "tensors", "--data-dir", data, "--steps", "2",
                "--out", native)
        evaluated = rdprune(binary, "eval", "--model", native, "--dataset", "tensors", "--data-dir", few)
        assert evaluated["samples"] == 20, evaluated
        truncated = os.path.join(tmp, "truncated.pt")
        with open(os.path.join(data, "test.pt"), "rb") as f, open(truncated, "wb") as g_out:
            g_out.write(f.read()[:500])
        error = rdprune(binary, "eval", "--model", os.path.join(tmp, "scripted.pt"), "--dataset", "tensors",
                        "--data-dir", truncated, expect=1)
        assert "torch.save" in error["error"], error
    print("pytorch flow: scripted and traced models pruned, reloaded and checked")


if __name__ == "__main__":
    main()
