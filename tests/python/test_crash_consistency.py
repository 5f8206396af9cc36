#!/usr/bin/env python3
"""Crash consistency: rdprune killed at many points gives, when run again, what it gives whole.

For `curves`, `run` (rd, two rounds with fine-tuning) and `compare` (rd and global at two targets)
on a small model, the harness times one uninterrupted run, then for each of --points moments
spread over that time starts the command afresh, kills it there (SIGKILL; SIGINT for every third
point), checks that every file in its output directory is whole (JSON parses; a model loads
with `rdprune info`) apart from temporary files marked `.tmp.<pid>`, runs the same command again to
the end and checks that the outputs equal the uninterrupted run's (curves, plans, masks and
figures; times and the compute a resumed run did not redo aside) and that no temporary file is
left. SIGINT must end the command with its own exit status and remove its temporary files itself.
A full disk, as a limit on the size of files the command may write (RLIMIT_FSIZE: the write fails
with EFBIG), must end it with one line of rdprune's own and a non-zero exit, every file whole and
none temporary; the rerun with room finishes with the uninterrupted run's outputs.
"""
import argparse
import glob
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import torch

COST_KEYS = {"seconds", "reused_seconds", "forward_samples", "reused_forward_samples", "allocation_seconds",
             "finetune_seconds", "resumed", "out_dir", "threads"}


def fail(message):
    sys.exit("FAIL: " + message)


def run(args):
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-400:]}")
    return result


def without_costs(value):
    if isinstance(value, dict):
        return {k: without_costs(v) for k, v in value.items() if k not in COST_KEYS}
    if isinstance(value, list):
        return [without_costs(v) for v in value]
    return value


def is_temporary(path):
    return ".tmp." in os.path.basename(path)


def outputs(root):
    """What a command produced, by relative path: parsed JSON without costs, or a file's hash."""
    found = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        relative = os.path.relpath(path, root)
        if os.path.isdir(path) or relative.startswith("cache") or is_temporary(path):
            continue
        if path.endswith(".json"):
            found[relative] = without_costs(json.load(open(path)))
        elif path.endswith((".pt", ".txt")):  # tables (csv, md) hold the costs: results.json has their figures
            found[relative] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return found


def check_whole(rdprune, root, context):
    for path in glob.glob(os.path.join(root, "**", "*"), recursive=True):
        if os.path.isdir(path) or is_temporary(path):
            continue
        if path.endswith(".json"):
            try:
                json.load(open(path))
            except ValueError as e:
                fail(f"{context}: {path} is partial: {e}")
        elif path.endswith(".pt"):
            result = subprocess.run([rdprune, "info", "--model", path], capture_output=True, text=True)
            if result.returncode != 0:
                fail(f"{context}: {path} does not load: {result.stderr.strip()}")


def fresh(out, makes_dir):
    shutil.rmtree(out, ignore_errors=True)
    if makes_dir:  # a command whose output is a file in it
        os.makedirs(out)


def kill_and_resume(rdprune, command, out, makes_dir, reference, moment, sig, context):
    fresh(out, makes_dir)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(moment)
    if process.poll() is None:
        process.send_signal(sig)
    _, err = process.communicate()
    if sig == signal.SIGINT and process.returncode not in (0, -signal.SIGINT, 130):
        fail(f"{context}: SIGINT ended it with status {process.returncode}: {err.strip()[-300:]}")
    if os.path.exists(out):
        check_whole(rdprune, out, context)
        if sig == signal.SIGINT:
            left = [p for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if is_temporary(p)]
            if left:
                fail(f"{context}: SIGINT left temporary files {left}")
    run(command)
    resumed = outputs(out)
    if resumed != reference:
        differing = sorted(k for k in set(resumed) | set(reference) if resumed.get(k) != reference.get(k))
        fail(f"{context}: resumed outputs differ from the uninterrupted run's in {differing}")
    left = [p for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if is_temporary(p)]
    if left:
        fail(f"{context}: temporary files left after the rerun: {left}")


def limit_file_size(limit):
    """For the child: files may not grow past `limit` bytes (a full disk, as writes see it), and
    the write fails with EFBIG instead of SIGXFSZ ending the process."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def fill_and_resume(rdprune, command, out, makes_dir, reference, limit, context):
    """A disk that fills at `limit` bytes per file: a one-line error and a non-zero exit, every
    file whole, no temporary file; the rerun on a disk with room finishes as if never stopped."""
    fresh(out, makes_dir)
    result = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit_file_size(limit))
    if result.returncode == 0:
        return False  # every file fitted
    last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    if result.returncode < 0 or not last.startswith("rdprune: error: "):
        fail(f"{context}: status {result.returncode}, last line {last!r}")
    check_whole(rdprune, out, context)
    left = [p for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if is_temporary(p)]
    if left:
        fail(f"{context}: a failed write left temporary files {left}")
    run(command)
    if outputs(out) != reference:
        fail(f"{context}: outputs after the rerun differ from the uninterrupted run's")
    return True


def make_data(tmp):
    torch.manual_seed(0)
    x = torch.rand(160, 1, 28, 28) * 0.2
    y = torch.arange(160) % 4
    for i in range(160):  # learnable: a bright square whose place is the class
        row, col = 4 + 10 * (y[i] // 2), 4 + 10 * (y[i] % 2)
        x[i, 0, row:row + 8, col:col + 8] += 0.8
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    torch.save({"x": x[:128], "y": y[:128]}, os.path.join(data, "train.pt"))
    torch.save({"x": x[128:], "y": y[128:]}, os.path.join(data, "test.pt"))
    return ["--dataset", "tensors", "--data-dir", data, "--threads", "1"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rdprune", required=True)
    parser.add_argument("--points", type=int, default=30, help="kill points per command")
    parser.add_argument("--commands", default="curves,run,compare")
    parser.add_argument("--disk-limits", default="2000,20000,200000,2000000",
                        help="file sizes (bytes) at which the disk is full, one run each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(tmp)
        model = os.path.join(tmp, "mlp.pt")
        run([args.rdprune, "train", "--arch", "mlp", "--steps", "30", "--batch-size", "32", "--out", model] + data)
        rd = ["--calib-size", "32", "--levels", "8", "--refine", "1"]
        out = os.path.join(tmp, "out")
        commands = {
            "curves": ([args.rdprune, "curves", "--model", model, "--out", os.path.join(out, "curves.json"),
                        "--calib-size", "32", "--levels", "8"] + data, True),
            "run": ([args.rdprune, "run", "--model", model, "--method", "rd", "--sparsity", "0.8", "--rounds",
                     "2", "--finetune-steps", "20", "--out-dir", out] + rd + data, False),
            "compare": ([args.rdprune, "compare", "--model", model, "--methods", "rd,global", "--sparsities",
                         "0.5,0.8", "--finetune-steps", "10", "--out-dir", out] + rd + data, False),
        }
        for name in args.commands.split(","):
            command, makes_dir = commands[name]
            fresh(out, makes_dir)
            start = time.monotonic()
            run(command)
            duration = time.monotonic() - start
            reference = outputs(out)
            for point in range(args.points):
                moment = duration * (point + 0.5) / args.points
                sig = signal.SIGINT if point % 3 == 2 else signal.SIGKILL
                kill_and_resume(args.rdprune, command, out, makes_dir, reference, moment, sig,
                                f"{name} at {moment:.2f}s ({signal.Signals(sig).name})")
            failed = 0
            limits = [int(limit) for limit in args.disk_limits.split(",") if limit]
            for limit in limits:
                failed += fill_and_resume(args.rdprune, command, out, makes_dir, reference, limit,
                                          f"{name} with files limited to {limit} bytes")
            print(f"{name}: {args.points} kill points over {duration:.1f}s, outputs equal after each rerun; "
                  f"{failed} of {len(limits)} disk limits stopped it with one line, and the rerun finished it")
    print("OK")


if __name__ == "__main__":
    main()
