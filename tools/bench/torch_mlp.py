#!/usr/bin/python3
"""PyTorch baseline for tools/bench/mlp, tools/bench/models and
tools/device-check: the same model, optimizer, batch and data as the troupe
run it is compared with (--model mlp: examples/fashion_mnist.toml's MLP,
widened by --hidden/--layers; --model cnn: examples/fashion_mnist_cnn.toml),
on one CPU thread or (--device cuda) on the GPU with the data set held in
GPU memory. Prints one JSON object.

Only the training loop is timed (no data loading, no evaluation), the same
way troupe's samples_per_s is measured; on the GPU up to a synchronize.
"""
import argparse
import gzip
import json
import time

import numpy as np
import torch


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1, help="hidden layers")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--model", default="mlp", help="mlp or cnn")
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = torch.from_numpy(read_idx(f"{a.data}/train-images-idx3-ubyte.gz")
                         .reshape(-1, 784).astype(np.float32) / 255.0)
    y = torch.from_numpy(read_idx(f"{a.data}/train-labels-idx1-ubyte.gz")
                         .astype(np.int64))
    tx = torch.from_numpy(read_idx(f"{a.data}/t10k-images-idx3-ubyte.gz")
                          .reshape(-1, 784).astype(np.float32) / 255.0)
    ty = torch.from_numpy(read_idx(f"{a.data}/t10k-labels-idx1-ubyte.gz")
                          .astype(np.int64))
    nn = torch.nn
    if a.model == "cnn":
        x, tx = x.reshape(-1, 1, 28, 28), tx.reshape(-1, 1, 28, 28)
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    else:
        layers, width = [], 784
        for _ in range(a.layers):
            layers += [nn.Linear(width, a.hidden), nn.ReLU()]
            width = a.hidden
        layers.append(nn.Linear(width, 10))
        model = nn.Sequential(*layers)
    model = model.to(dev)
    x, y, tx, ty = x.to(dev), y.to(dev), tx.to(dev), ty.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = len(x) // a.batch
    samples = 0
    train_s = 0.0
    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()
    for _ in range(a.epochs):
        perm = torch.randperm(len(x), device=dev)
        sync()
        t0 = time.perf_counter()
        for s in range(steps):
            idx = perm[s * a.batch:(s + 1) * a.batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        sync()
        train_s += time.perf_counter() - t0
        samples += steps * a.batch
    with torch.no_grad():
        logits = model(tx)
        acc = (logits.argmax(1) == ty).float().mean().item()
        test_loss = loss_fn(logits, ty).item()
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__,
                      "device": (torch.cuda.get_device_name(dev)
                                 if dev.type == "cuda" else "cpu"),
                      "samples_per_s": samples / train_s, "train_s": train_s,
                      "test_accuracy": acc, "test_loss": test_loss}))


if __name__ == "__main__":
    main()
