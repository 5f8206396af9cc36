#!/usr/bin/env python3
"""rdprune on a CUDA device against the same commands on the CPU.

Skipped (exit 77) where rdprune finds no CUDA device. Where it finds one, the same files go through
each step with `--device cpu` (the reference) and with `--device cuda`, and the results are
compared:

- a ResNet-20 trained on the GPU loads on the CPU; both devices classify the same images the same
  way (at most one image in 500 may flip, at a near-tie of two logits) with the same loss to 1e-4;
- weight curves and channel curves agree point by point to 1e-3 relative (1e-7 absolute), which
  full float32 meets and TF32 would not (rdprune turns TF32 off); the GPU's weight curves are the
  same file twice;
- `prune` with one plan gives the same per-layer sparsities and outcomes on both devices, and a
  channel plan the same smaller model (shapes and outcomes);
- a model fine-tuned on the GPU keeps its masks, and the same seed gives the same model twice (the
  same file, or the same outcomes);
- a TorchScript model written by PyTorch gets curves and is pruned on the GPU, and loads on the CPU
  in PyTorch, when the Python running this test has torch;
- a latency budget is planned from tables timed on the GPU and its plan keeps the budget as
  predicted.

`--device-under-test cpu` runs the same comparisons CPU against CPU, to check the test itself on a
machine without a GPU.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77
TOLERANCE = 1e-4
CURVE_RTOL, CURVE_ATOL = 1e-3, 1e-7


class Runner:
    def __init__(self, rdprune, tmp):
        self.rdprune = rdprune
        self.tmp = tmp

    def path(self, name):
        return os.path.join(self.tmp, name)

    def run(self, args, what):
        done = subprocess.run([self.rdprune] + args, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            sys.exit(f"FAIL: {what}: exit {done.returncode}: {done.stderr.strip()[-1500:]}")
        return done

    def json(self, args, what):
        return json.loads(self.run(args + ["--json"], what).stdout)


DATA = ["--dataset", "synthetic", "--synthetic-size", "512"]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def curves_close(a_path, b_path, what):
    """Largest relative difference of two curves files, point by point; fails above CURVE_RTOL."""
    a, b = json.load(open(a_path)), json.load(open(b_path))
    assert [l["name"] for l in a["layers"]] == [l["name"] for l in b["layers"]], what
    worst = 0.0
    for la, lb in zip(a["layers"], b["layers"]):
        assert la["kept"] == lb["kept"], (what, la["name"])
        for x, y in zip(la["distortion"], lb["distortion"]):
            assert abs(x - y) <= CURVE_RTOL * max(abs(x), abs(y)) + CURVE_ATOL, (what, la["name"], x, y)
            worst = max(worst, abs(x - y) / max(abs(x), abs(y), CURVE_ATOL))
    return worst


def outcomes(path):
    """The per-image outcomes of an rdprune.hits/1 file."""
    lines = read(path).decode().split("\n")
    assert lines[0].startswith("rdprune.hits/1 "), path
    return lines[1]


def same_outcomes(r, model_a, device_a, model_b, device_b, what):
    """Both models classify the same images the same way, but for one image in 500 (a near-tie can
    flip between devices); the losses agree to TOLERANCE."""
    hits_a, hits_b = r.path("a.hits"), r.path("b.hits")
    ea = r.json(["eval", "--model", model_a, "--device", device_a, "--hits", hits_a] + DATA, what)
    eb = r.json(["eval", "--model", model_b, "--device", device_b, "--hits", hits_b] + DATA, what)
    a, b = outcomes(hits_a), outcomes(hits_b)
    flipped = sum(x != y for x, y in zip(a, b))
    assert len(a) == len(b) and flipped <= len(a) // 500, f"{what}: {flipped} of {len(a)} outcomes differ"
    assert abs(ea["loss"] - eb["loss"]) <= TOLERANCE * max(1.0, abs(ea["loss"])), (what, ea, eb)
    return ea


def layer_sparsities(r, model):
    info = r.json(["info", "--model", model, "--device", "cpu"], "info " + model)
    return {layer["name"]: layer["sparsity"] for layer in info["layers"]}


def weight_pipeline(r, gpu):
    trained = r.path("trained.pt")
    r.json(["train", "--arch", "resnet20", "--steps", "20", "--batch-size", "32", "--seed", "3",
            "--out", trained, "--device", gpu] + DATA, "train on " + gpu)
    top1 = same_outcomes(r, trained, "cpu", trained, gpu, "eval of a model trained on " + gpu)["top1"]
    print(f"train on {gpu}, eval on cpu and {gpu}: top-1 {top1:.4f}, the same outcomes")

    curves = {}
    for role, device in (("ref", "cpu"), ("test", gpu), ("again", gpu)):
        curves[role] = r.path(f"curves-{role}.json")
        r.run(["curves", "--model", trained, "--device", device, "--calib-size", "64", "--levels", "20",
               "--no-cache", "--out", curves[role]] + DATA, "curves on " + device)
    worst = curves_close(curves["ref"], curves["test"], "weight curves, cpu against " + gpu)
    assert read(curves["test"]) == read(curves["again"]), f"weight curves on {gpu} differ between runs"
    print(f"weight curves: {gpu} within {worst:.1e} of cpu, point by point; the same twice on {gpu}")

    plan = r.path("plan.json")
    r.run(["allocate", "--curves", curves["ref"], "--sparsity", "0.7", "--out", plan], "allocate")
    pruned = {}
    for role, device in (("ref", "cpu"), ("test", gpu)):
        pruned[role] = r.path(f"pruned-{role}.pt")
        r.run(["prune", "--model", trained, "--plan", plan, "--device", device, "--out", pruned[role]]
              + DATA, "prune on " + device)
    assert layer_sparsities(r, pruned["ref"]) == layer_sparsities(r, pruned["test"]), \
        "per-layer sparsities differ"
    same_outcomes(r, pruned["ref"], "cpu", pruned["test"], gpu, "pruned on cpu against " + gpu)
    print(f"prune: the same sparsities and outcomes on cpu and {gpu}")

    tuned = []
    for attempt in range(2):
        tuned.append(r.path(f"tuned-{attempt}.pt"))
        r.run(["finetune", "--model", pruned["test"], "--steps", "10", "--batch-size", "32", "--lr", "0.01",
               "--device", gpu, "--out", tuned[-1]] + DATA, "finetune on " + gpu)
    assert layer_sparsities(r, tuned[0]) == layer_sparsities(r, pruned["test"]), "fine-tuning lost masks"
    assert read(tuned[0]) == read(tuned[1]) or same_outcomes(
        r, tuned[0], gpu, tuned[1], gpu, "fine-tuned twice"), "fine-tuning is not repeatable"
    print(f"finetune on {gpu}: masks held; the same seed gives the same model")
    return trained


def channel_pipeline(r, gpu, trained):
    curves = {}
    for role, device in (("ref", "cpu"), ("test", gpu)):
        curves[role] = r.path(f"channel-curves-{role}.json")
        r.run(["curves", "--model", trained, "--granularity", "channel", "--device", device,
               "--calib-size", "64", "--levels", "10", "--no-cache", "--out", curves[role]] + DATA,
              "channel curves on " + device)
    worst = curves_close(curves["ref"], curves["test"], "channel curves, cpu against " + gpu)
    plan = r.path("channel-plan.json")
    r.run(["allocate", "--curves", curves["ref"], "--granularity", "channel", "--budget", "flops",
           "--sparsity", "0.5", "--out", plan], "channel allocate")
    smaller = {}
    for role, device in (("ref", "cpu"), ("test", gpu)):
        smaller[role] = r.path(f"smaller-{role}.pt")
        r.run(["prune", "--model", trained, "--plan", plan, "--device", device, "--out", smaller[role]]
              + DATA, "channel prune on " + device)
    shapes = [{l["name"]: l["shape"] for l in r.json(["info", "--model", smaller[role], "--device", "cpu"],
                                                     "info")["layers"]} for role in ("ref", "test")]
    assert shapes[0] == shapes[1], "the smaller models differ in shape"
    same_outcomes(r, smaller["ref"], "cpu", smaller["test"], gpu, "smaller models")
    print(f"channel curves: {gpu} within {worst:.1e} of cpu; the same smaller model on both")

    # A GPU runs a small network's layers at nearly the same time whatever their width (each call
    # costs mostly its launch), so the budget is a light one.
    latency_plan = r.path("latency-plan.json")
    done = r.json(["allocate", "--curves", curves["test"], "--granularity", "channel", "--budget", "latency",
                   "--sparsity", "0.02", "--latency-batch", "64", "--latency-grid", "3", "--no-cache",
                   "--model", trained, "--device", gpu, "--out", latency_plan] + DATA, "latency plan")
    kept, dense = done["kept_latency_seconds"], done["dense_latency_seconds"]
    assert 0 < kept <= 0.98 * dense * (1 + 1e-9), f"latency plan over its budget: {done}"
    print(f"latency budget on {gpu}: {kept / dense:.3f} of the dense {dense * 1e3:.2f} ms predicted")


def torchscript_pipeline(r, gpu, python):
    script = r.path("small.ts.pt")
    made = subprocess.run([python, "-c", (
        "import sys, torch, torch.nn as nn\n"
        "torch.manual_seed(0)\n"
        "m = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                  nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "                  nn.Flatten(), nn.Linear(16, 10)).eval()\n"
        "torch.jit.script(m).save(sys.argv[1])\n"), script], capture_output=True, text=True)
    if made.returncode != 0:
        print(f"TorchScript part left out: {python} cannot script a model ({made.stderr.strip()[-200:]})")
        return
    curves = {}
    for role, device in (("ref", "cpu"), ("test", gpu)):
        curves[role] = r.path(f"ts-curves-{role}.json")
        r.run(["curves", "--model", script, "--device", device, "--calib-size", "64", "--levels", "20",
               "--no-cache", "--out", curves[role]] + DATA, "TorchScript curves on " + device)
    worst = curves_close(curves["ref"], curves["test"], "TorchScript curves")
    plan = r.path("ts-plan.json")
    r.run(["allocate", "--curves", curves["test"], "--sparsity", "0.5", "--out", plan], "TorchScript plan")
    pruned = r.path("ts-pruned.pt")
    r.run(["prune", "--model", script, "--plan", plan, "--device", gpu, "--out", pruned] + DATA,
          "TorchScript prune")
    loaded = subprocess.run([python, "-c", (
        "import sys, torch\n"
        "m = torch.jit.load(sys.argv[1], map_location='cpu')\n"
        "print(m(torch.randn(2, 1, 28, 28)).shape)\n"), pruned], capture_output=True, text=True)
    assert loaded.returncode == 0, f"a TorchScript model pruned on {gpu} does not load: {loaded.stderr}"
    print(f"TorchScript: curves on {gpu} within {worst:.1e} of cpu; pruned on {gpu}, loads on cpu")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rdprune", required=True)
    parser.add_argument("--device-under-test", default="cuda")
    args = parser.parse_args()
    gpu = args.device_under_test
    probe = subprocess.run([args.rdprune, "info", "--model", "/nonexistent", "--device", gpu], capture_output=True,
                           text=True)
    if gpu.startswith("cuda") and "no CUDA device here" in probe.stderr:
        print(f"SKIP: {probe.stderr.strip()}")
        sys.exit(SKIP)
    with tempfile.TemporaryDirectory() as tmp:
        r = Runner(args.rdprune, tmp)
        trained = weight_pipeline(r, gpu)
        channel_pipeline(r, gpu, trained)
        torchscript_pipeline(r, gpu, sys.executable)
    print("OK")


if __name__ == "__main__":
    main()
