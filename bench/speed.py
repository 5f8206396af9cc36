#!/usr/bin/env python3
"""Times TorchScript models side by side on this CPU, in PyTorch, as a user would run them.

Each model is run in eval mode without gradients at every batch size and thread count asked for;
the models take turns within every repeat (so they see the same machine state), and the median of
the repeats is reported, with each model's speedup over the first (the dense model) and the share
of multiply-accumulates it keeps (given on the command line, from rdprune's plans), so the table
shows how much of a FLOPs reduction becomes time.

Usage: speed.py --shape C,H,W [--batches 1,64] [--threads 1,2] [--repeats 7] NAME=FILE[:KEPT] ...
"""
import argparse
import statistics
import time

import torch


def parse_model(text):
    name, rest = text.split("=", 1)
    path, _, kept = rest.partition(":")
    return name, path, float(kept) if kept else 1.0


def time_once(model, batch, runs):
    start = time.perf_counter()
    for _ in range(runs):
        model(batch)
    return (time.perf_counter() - start) / runs * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", required=True)
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    shape = [int(v) for v in args.shape.split(",")]
    models = [parse_model(text) for text in args.models]
    loaded = [(name, torch.jit.load(path).eval(), kept) for name, path, kept in models]
    torch.manual_seed(0)
    print(f"{'model':>14} {'kept FLOPs':>10} {'batch':>5} {'threads':>7} {'ms':>9} {'speedup':>8}")
    for threads in [int(v) for v in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for size in [int(v) for v in args.batches.split(",")]:
            batch = torch.randn([size] + shape)
            runs = 20 if size == 1 else 3
            times = {name: [] for name, _, _ in loaded}
            with torch.no_grad():
                for _, model, _ in loaded:
                    time_once(model, batch, 2)  # warm-up: the profiling executor's first runs
                for _ in range(args.repeats):
                    for name, model, _ in loaded:
                        times[name].append(time_once(model, batch, runs))
            dense = statistics.median(times[loaded[0][0]])
            for name, _, kept in loaded:
                ms = statistics.median(times[name])
                print(f"{name:>14} {kept:10.3f} {size:5d} {threads:7d} {ms:9.2f} {dense / ms:7.2f}x")


if __name__ == "__main__":
    main()
