#!/usr/bin/env python3
"""Transformers in TorchScript: every weight matrix is a prunable layer.

A model built from PyTorch's own nn.TransformerEncoder is censused by use: the patch embedding,
q, k and v of each attention in-projection (row blocks of one parameter), the output projection
(a Linear subclass), both MLP layers and the head. Pruned to 50% it is 50% sparse over all of
them, and plain PyTorch, which runs the fused attention kernels in eval mode without gradients,
gives the outputs of the masked weights on the unfused path. An in-projection whose rows are not
three equal blocks is refused in one line. Embedding tables and position embeddings are layers
only with --prune-embeddings.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

DIM, HEADS, HIDDEN, LAYERS, PATCH = 32, 4, 64, 2, 7


class PatchTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, DIM, PATCH, PATCH)
        layer = nn.TransformerEncoderLayer(DIM, HEADS, HIDDEN, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(DIM, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        return self.head(self.encoder(x).mean(1))


def run(args, ok=True):
    result = subprocess.run(args, capture_output=True, text=True)
    if ok and result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    if not ok:
        return result
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else result


def check_census(rdprune, path, model):
    info = run([rdprune, "info", "--model", path, "--input-shape", "1,28,28", "--json"])
    matrices = sum(p.numel() for p in model.parameters() if p.dim() >= 2)
    assert info["total_weights"] == matrices, (info["total_weights"], matrices)
    names = [layer["name"] for layer in info["layers"]]
    types = {layer["name"]: layer["type"] for layer in info["layers"]}
    for i in range(LAYERS):
        prefix = f"encoder.layers.{i}."
        for block in "qkv":
            name = prefix + "self_attn.in_proj_weight." + block
            assert types.get(name) == "attn_" + block, (name, names)
        for name in ("self_attn.out_proj", "linear1", "linear2"):
            assert types.get(prefix + name) == "linear", (prefix + name, names)
    assert types["patch"] == "conv2d" and types["head"] == "linear", types
    tokens = (28 // PATCH) ** 2
    flops = {layer["name"]: layer["flops_per_weight"] for layer in info["layers"]}
    assert flops["patch"] == tokens, flops
    assert flops["encoder.layers.0.self_attn.in_proj_weight.k"] == tokens, flops
    assert flops["encoder.layers.1.linear2"] == tokens, flops
    assert flops["head"] == 1, flops
    return matrices


def check_pruned(rdprune, tmp, path, model, matrices):
    plan = os.path.join(tmp, "plan.json")
    pruned_path = os.path.join(tmp, "pruned.pt")
    run([rdprune, "allocate", "--method", "uniform", "--model", path, "--sparsity", "0.5", "--out", plan])
    run([rdprune, "prune", "--model", path, "--plan", plan, "--out", pruned_path])
    pruned = torch.jit.load(pruned_path).eval()
    zeros = sum((p == 0).sum().item() for p in pruned.parameters() if p.dim() >= 2)
    assert abs(zeros / matrices - 0.5) < 0.01, zeros / matrices
    for i in range(LAYERS):
        attention = getattr(pruned.encoder.layers, str(i)).self_attn
        mask = attention.in_proj_weight_mask
        for block in mask.chunk(3, 0):  # q, k and v each pruned to their own 50%
            assert abs(block.float().mean().item() - 0.5) < 0.01, block.float().mean().item()
        assert torch.equal(attention.in_proj_weight, attention.in_proj_weight * mask)

    # The masked weights in the original model, run on the unfused path (gradients on).
    masked = PatchTransformer()
    masked.load_state_dict(model.state_dict())
    with torch.no_grad():
        for name, parameter in masked.named_parameters():
            if parameter.dim() >= 2:
                parameter.mul_((dict(pruned.named_parameters())[name] != 0).float())
    masked.eval()
    x = torch.randn(5, 1, 28, 28)
    reference = masked(x).detach()
    with torch.no_grad():  # eval mode without gradients: PyTorch's fused attention path
        fused = pruned(x)
    assert torch.allclose(fused, reference, atol=1e-5), (fused - reference).abs().max().item()
    info = run([rdprune, "info", "--model", pruned_path, "--json"])
    assert abs(info["sparsity"] - 0.5) < 0.01, info["sparsity"]


class Conv1D(nn.Module):
    """GPT-2's projection: y = x W + b with W stored [in, out], applied by addmm."""

    def __init__(self, nx, nf):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        out = torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight)
        return out.reshape(x.shape[:-1] + (self.weight.size(1),))


class OtherKinds(nn.Module):
    """Every other kind of weight matrix: 1-D, transposed and 3-D convolutions, GPT-2's Conv1D,
    and a bare parameter in a matrix product; the embedding and the norm are not layers."""

    def __init__(self):
        super().__init__()
        self.conv1d = nn.Conv1d(28, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(1, 2, 2, stride=2)
        self.conv3d = nn.Conv3d(1, 2, 3, padding=1)
        self.attn_c = Conv1D(8, 16)
        self.w = nn.Parameter(torch.randn(16, 10) * 0.1)
        self.embedding = nn.Embedding(4, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        a = self.conv1d(x.squeeze(1))                     # [B, 8, 28]
        b = self.up(x).mean((2, 3))                        # [B, 2]
        c = self.conv3d(x.unsqueeze(1)).mean((1, 2, 3, 4))  # [B]
        h = self.norm(a.transpose(1, 2) + self.embedding.weight[0])  # [B, 28, 8]
        y = self.attn_c(h).mean(1) @ self.w                # [B, 10]
        return y + b.sum(1, keepdim=True) + c.unsqueeze(1)


def check_other_kinds(rdprune, tmp):
    path = os.path.join(tmp, "kinds.pt")
    torch.jit.save(torch.jit.script(OtherKinds()), path)
    info = run([rdprune, "info", "--model", path, "--input-shape", "1,28,28", "--json"])
    kinds = {layer["name"]: (layer["type"], layer["flops_per_weight"]) for layer in info["layers"]}
    assert kinds == {"conv1d": ("conv1d", 28), "up": ("conv_transpose2d", 28 * 28),
                     "conv3d": ("conv3d", 28 * 28), "attn_c": ("linear_t", 28),
                     "w": ("linear_t", 1)}, kinds


def check_wanda(rdprune, tmp, path, model):
    """wanda on the TorchScript transformer: each row of linear1 keeps its highest |w| * ||x||, with
    ||x|| measured as PyTorch sees linear1's inputs on the calibration images."""
    data = os.path.join(tmp, "data")
    os.makedirs(data, exist_ok=True)
    x = torch.randn(16, 1, 28, 28)
    for split in ("train", "test"):
        torch.save({"x": x, "y": torch.arange(16) % 10}, os.path.join(data, split + ".pt"))
    plan = os.path.join(tmp, "wanda.json")
    pruned_path = os.path.join(tmp, "wanda.pt")
    flags = ["--dataset", "tensors", "--data-dir", data, "--mean", "0", "--std", "1", "--calib-size", "16"]
    run([rdprune, "allocate", "--method", "uniform", "--criterion", "wanda", "--model", path,
         "--sparsity", "0.5", "--out", plan] + flags)
    run([rdprune, "prune", "--model", path, "--plan", plan, "--out", pruned_path] + flags)
    seen = []
    layer = model.encoder.layers[0].linear1
    hook = layer.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    with torch.enable_grad():  # the unfused path, where linear1 is a module call
        model(x)
    hook.remove()
    norms = seen[0].pow(2).sum(1).mean(0).sqrt()  # per input feature: over tokens, RMS over images
    scores = layer.weight.detach().abs() * norms
    pruned = torch.jit.load(pruned_path)
    kept = getattr(pruned.encoder.layers, "0").linear1.weight != 0
    expected = torch.zeros_like(kept)
    expected.scatter_(1, scores.topk(scores.size(1) // 2, dim=1).indices, True)
    assert torch.equal(kept, expected), (kept != expected).sum().item()


class TokenTransformer(nn.Module):
    """Pixels as tokens: a lookup table and a position embedding before an encoder layer."""

    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(16, DIM)
        self.position = nn.Parameter(torch.randn(1, 49, DIM) * 0.02)
        layer = nn.TransformerEncoderLayer(DIM, HEADS, HIDDEN, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(DIM, 10)

    def forward(self, x):
        ids = (F.avg_pool2d(x, 4).clamp(0, 1) * 15).long().flatten(1)  # [B, 49]
        return self.head(self.encoder(self.tokens(ids) + self.position).mean(1))


def check_embeddings(rdprune, tmp):
    """Embeddings stay dense unless --prune-embeddings makes them layers; a model whose embeddings
    were pruned is refused without it, in one line."""
    model = TokenTransformer().eval()
    path = os.path.join(tmp, "tokens.pt")
    torch.jit.save(torch.jit.script(model), path)
    shape = ["--input-shape", "1,28,28"]
    plain = run([rdprune, "info", "--model", path, "--json"] + shape)
    types = {layer["name"]: layer["type"] for layer in plain["layers"]}
    assert "tokens" not in types and "position" not in types, types
    info = run([rdprune, "info", "--model", path, "--prune-embeddings", "--json"] + shape)
    kinds = {layer["name"]: (layer["type"], layer["flops_per_weight"]) for layer in info["layers"]}
    assert kinds["tokens"] == ("embedding", 0) and kinds["position"] == ("pos_embedding", 0), kinds
    matrices = sum(p.numel() for p in model.parameters() if p.dim() >= 2)
    assert info["total_weights"] == matrices, (info["total_weights"], matrices)

    plan = os.path.join(tmp, "embeddings.json")
    pruned_path = os.path.join(tmp, "tokens-pruned.pt")
    flags = ["--prune-embeddings"]
    run([rdprune, "allocate", "--method", "uniform", "--model", path, "--sparsity", "0.5", "--out", plan] + flags)
    run([rdprune, "prune", "--model", path, "--plan", plan, "--out", pruned_path] + flags)
    pruned = torch.jit.load(pruned_path)
    for parameter in (pruned.tokens.weight, pruned.position):
        assert abs((parameter == 0).float().mean().item() - 0.5) < 0.01, (parameter == 0).float().mean()
    result = run([rdprune, "info", "--model", pruned_path], ok=False)
    message = result.stderr.strip()
    assert result.returncode != 0 and "\n" not in message, message
    assert "embedding" in message and "only when embeddings are pruned" in message, message


def check_bad_in_projection(rdprune, tmp):
    attention = nn.MultiheadAttention(4, 2, batch_first=True)
    attention.in_proj_weight = nn.Parameter(torch.randn(10, 4))

    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = attention

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0].flatten(1)

    path = os.path.join(tmp, "bad.pt")
    torch.jit.save(torch.jit.script(Bad()), path)
    result = run([rdprune, "info", "--model", path], ok=False)
    assert result.returncode != 0, result.stdout
    message = result.stderr.strip()
    assert "\n" not in message and "three equal blocks" in message and "attn.in_proj_weight" in message, message


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rdprune", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        model = PatchTransformer().eval()
        path = os.path.join(tmp, "transformer.pt")
        torch.jit.save(torch.jit.script(model), path)
        matrices = check_census(args.rdprune, path, model)
        check_pruned(args.rdprune, tmp, path, model, matrices)
        check_wanda(args.rdprune, tmp, path, model)
        check_other_kinds(args.rdprune, tmp)
        check_embeddings(args.rdprune, tmp)
        check_bad_in_projection(args.rdprune, tmp)
    print("OK")


if __name__ == "__main__":
    main()
