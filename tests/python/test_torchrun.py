#!/usr/bin/env python3
"""rdprune under torchrun, the way PyTorch users start several processes.

A TorchScript model written by PyTorch is evaluated by `rdprune eval` in one process and under
`torchrun --nproc_per_node N --no_python` for N = 2 and 3: rank 0 reports the same top-1, top-5 and
per-image outcomes (the loss to float summation order), and the other ranks print nothing. Its
curves, measured by 2 processes under torchrun, equal one process's byte for byte, and 20 steps of
data-parallel fine-tuning by 2 and 3 processes equal one process's to 1e-5. Debian's
torchrun (torch 1.13 on Python 3.11) needs its output options given explicitly
(--redirects 2 --tee 2 --log_dir DIR), or it stops at start.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def under_torchrun(torchrun, n, log_dir, rdprune, command, what):
    """`rdprune command` as n processes under torchrun; exits with FAIL when it fails."""
    line = [torchrun, "--nproc_per_node", str(n), "--master_port", str(free_port()), "--no_python",
            "--redirects", "2", "--tee", "2", "--log_dir", log_dir, rdprune] + command + ["--dist-timeout", "60"]
    run = subprocess.run(line, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        sys.exit(f"FAIL: {what} under torchrun with {n} processes exited {run.returncode}: "
                 f"{run.stderr.strip()[-2000:]}")
    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rdprune", required=True)
    args = parser.parse_args()
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        print("SKIP: no torchrun")
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
        path = os.path.join(tmp, "mlp.pt")
        torch.jit.script(model).save(path)
        eval_args = ["eval", "--model", path, "--dataset", "synthetic", "--input-shape", "1,8,8",
                     "--num-classes", "4", "--synthetic-size", "101", "--json"]
        alone = subprocess.run([args.rdprune] + eval_args + ["--hits", os.path.join(tmp, "alone.hits")],
                               capture_output=True, text=True)
        if alone.returncode != 0:
            sys.exit(f"FAIL: one process: {alone.stderr.strip()}")
        expected = json.loads(alone.stdout)
        with open(os.path.join(tmp, "alone.hits")) as f:
            expected_hits = f.read()
        for n in (2, 3):
            hits = os.path.join(tmp, f"hits-{n}")
            run = under_torchrun(torchrun, n, os.path.join(tmp, f"logs-{n}"), args.rdprune,
                                 eval_args + ["--hits", hits], "eval")
            reports = [line for line in run.stdout.splitlines() if line.startswith("{")]
            assert len(reports) == 1, f"one report from rank 0 expected, got: {run.stdout!r}"
            got = json.loads(reports[0])
            for key in ("top1", "top5", "samples"):
                assert got[key] == expected[key], (n, key, got[key], expected[key])
            assert abs(got["loss"] - expected["loss"]) < 1e-6, (n, got["loss"], expected["loss"])
            with open(hits) as f:
                assert f.read() == expected_hits, f"{n} processes: per-image outcomes differ"
            print(f"torchrun, {n} processes: top-1 {got['top1']:.4f} as one process; outcomes equal")
        curves_args = ["curves", "--model", path, "--dataset", "synthetic", "--input-shape", "1,8,8",
                       "--num-classes", "4", "--calib-size", "64", "--levels", "20", "--no-cache"]
        single = subprocess.run([args.rdprune] + curves_args + ["--out", os.path.join(tmp, "one.json")],
                                capture_output=True, text=True)
        if single.returncode != 0:
            sys.exit(f"FAIL: curves in one process: {single.stderr.strip()}")
        under_torchrun(torchrun, 2, os.path.join(tmp, "logs-curves"), args.rdprune,
                       curves_args + ["--out", os.path.join(tmp, "two.json")], "curves")
        with open(os.path.join(tmp, "one.json"), "rb") as a, open(os.path.join(tmp, "two.json"), "rb") as b:
            assert a.read() == b.read(), "curves of 2 processes differ from one process's"
        print("torchrun, 2 processes: curves equal one process's byte for byte")
        # 20 steps of data-parallel fine-tuning (global batch 48) equal 20 steps of one process.
        tune_args = ["finetune", "--model", path, "--dataset", "synthetic", "--input-shape", "1,8,8",
                     "--num-classes", "4", "--synthetic-size", "256", "--steps", "20", "--batch-size", "48",
                     "--lr", "0.05", "--no-augment"]
        single = subprocess.run([args.rdprune] + tune_args + ["--out", os.path.join(tmp, "tuned-1.pt")],
                                capture_output=True, text=True)
        if single.returncode != 0:
            sys.exit(f"FAIL: finetune in one process: {single.stderr.strip()}")
        for n in (2, 3):
            tuned = os.path.join(tmp, f"tuned-{n}.pt")
            under_torchrun(torchrun, n, os.path.join(tmp, f"logs-tune-{n}"), args.rdprune,
                           tune_args + ["--out", tuned], "finetune")
            one = dict(torch.jit.load(os.path.join(tmp, "tuned-1.pt")).named_parameters())
            several = dict(torch.jit.load(tuned).named_parameters())
            start = dict(torch.jit.load(path).named_parameters())
            moved = max((one[k] - start[k]).abs().max().item() for k in one)
            assert moved > 1e-3, f"fine-tuning moved no weight ({moved})"
            worst = max((one[k] - several[k]).abs().max().item() for k in one)
            assert worst < 1e-5, f"{n} processes: weights differ from one process's by {worst}"
            print(f"torchrun, {n} processes: 20 fine-tuning steps equal one process's to {worst:.1e}")
    print("PASS")


if __name__ == "__main__":
    main()
