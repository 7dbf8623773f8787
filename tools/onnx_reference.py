#!/usr/bin/python3
"""Evaluates an ONNX model outside troupe: a NumPy interpreter of the ops
troupe writes, written from the ONNX operator specification, run on IDX or
CSV test data.

  onnx_reference.py MODEL.onnx --idx IMAGES LABELS [--predictions OUT.csv]
  onnx_reference.py MODEL.onnx --csv FILE --target COLUMN

Checks the model with onnx.checker first. Prints one JSON object:
samples, accuracy (classification) or mse (regression), and the predicted
classes' agreement with --compare (a `troupe predict` CSV) when given.
"""
import argparse
import gzip
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise SystemExit(f"{path}: not an IDX file of bytes")
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def pad_nchw(x, p, value):
    if p == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=value)


def windows(x, k, s):
    # [N, C, H, W] -> [N, C, OH, OW, k, k]
    v = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    return v[:, :, ::s, ::s]


def conv(x, w, b, a):
    k = w.shape[2]
    s = a.get("strides", [1, 1])[0]
    p = a.get("pads", [0, 0, 0, 0])[0]
    assert a.get("group", 1) == 1
    v = windows(pad_nchw(x, p, 0.0), k, s)  # N C OH OW k k
    y = np.einsum("nchwij,ocij->nohw", v, w, optimize=True)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y.astype(np.float32)


def pool(x, a, kind):
    k = a["kernel_shape"][0]
    s = a.get("strides", [1, 1])[0]
    p = a.get("pads", [0, 0, 0, 0])[0]
    if kind == "max":
        return windows(pad_nchw(x, p, -np.inf), k, s).max(axis=(4, 5))
    total = windows(pad_nchw(x, p, 0.0), k, s).sum(axis=(4, 5))
    if a.get("count_include_pad", 0) == 1 or p == 0:
        return (total / (k * k)).astype(np.float32)
    ones = windows(pad_nchw(np.ones_like(x[:1, :1]), p, 0.0), k, s).sum(axis=(4, 5))
    return (total / ones).astype(np.float32)


def run(model, x):
    g = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i.name for i in g.input if i.name not in values]
    values[inputs[0]] = x
    for node in g.node:
        a = attrs(node)
        ins = [values[n] if n else None for n in node.input]
        op = node.op_type
        if op == "Gemm":
            A, B = ins[0], ins[1]
            if a.get("transB", 0):
                B = B.T
            y = A @ B
            if len(ins) > 2 and ins[2] is not None:
                y = y + ins[2]
        elif op == "Conv":
            y = conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a)
        elif op == "MaxPool":
            y = pool(ins[0], a, "max")
        elif op == "AveragePool":
            y = pool(ins[0], a, "avg")
        elif op == "Flatten":
            axis = a.get("axis", 1)
            y = ins[0].reshape(int(np.prod(ins[0].shape[:axis])), -1)
        elif op == "Relu":
            y = np.maximum(ins[0], 0)
        elif op == "Sigmoid":
            y = 1 / (1 + np.exp(-ins[0]))
        elif op == "Tanh":
            y = np.tanh(ins[0])
        elif op == "Softmax":
            z = ins[0] - ins[0].max(axis=a.get("axis", -1), keepdims=True)
            e = np.exp(z)
            y = e / e.sum(axis=a.get("axis", -1), keepdims=True)
        elif op == "BatchNormalization":
            X, scale, bias, mean, var = ins[:5]
            shape = (1, -1) + (1,) * (X.ndim - 2)
            eps = a.get("epsilon", 1e-5)
            y = (X - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
            y = y * scale.reshape(shape) + bias.reshape(shape)
        elif op == "LayerNormalization":
            X, scale = ins[0], ins[1]
            axis = a.get("axis", -1) % X.ndim
            axes = tuple(range(axis, X.ndim))
            mu = X.mean(axis=axes, keepdims=True)
            var = ((X - mu) ** 2).mean(axis=axes, keepdims=True)
            y = (X - mu) / np.sqrt(var + a.get("epsilon", 1e-5)) * scale
            if len(ins) > 2 and ins[2] is not None:
                y = y + ins[2]
        elif op == "PRelu":
            y = np.where(ins[0] < 0, ins[0] * ins[1], ins[0])
        elif op in ("Dropout", "Identity"):
            y = ins[0]
        else:
            raise SystemExit(f"op {op} is not one this reference runs")
        values[node.output[0]] = np.asarray(y, dtype=np.float32)
    return values[g.output[0].name]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--idx", nargs=2, metavar=("IMAGES", "LABELS"))
    ap.add_argument("--csv")
    ap.add_argument("--target", default="")
    ap.add_argument("--compare", help="a `troupe predict` CSV to agree with")
    args = ap.parse_args()
    model = onnx.load(args.model)
    onnx.checker.check_model(model)
    in_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    if args.idx:
        images, labels = read_idx(args.idx[0]), read_idx(args.idx[1])
        x = images.reshape(len(images), -1).astype(np.float32) / np.float32(255)
        y = labels.astype(np.int64)
    else:
        import csv
        with open(args.csv) as f:
            rows = list(csv.reader(f))
        header = rows[0]
        rows = rows[1:]
        col = header.index(args.target) if args.target in header else len(header) - 1
        x = np.array([[float(v) for i, v in enumerate(r) if i != col] for r in rows],
                     dtype=np.float32)
        y = np.array([float(r[col]) for r in rows])
    x = x.reshape([len(x)] + in_shape)
    outs = []
    for first in range(0, len(x), 1000):
        outs.append(run(model, x[first:first + 1000]))
    out = np.concatenate(outs)
    meta = {p.key: p.value for p in model.metadata_props}
    result = {"samples": int(len(x))}
    if int(meta.get("troupe.classes", "0")) > 0:
        pred = out.argmax(axis=1)
        result["accuracy"] = float((pred == y).mean())
        if args.compare:
            with open(args.compare) as f:
                got = [int(r.split(",")[0]) for r in f.read().splitlines()[1:]]
            result["agree_with_predict"] = float((np.array(got) == pred).mean())
    else:
        result["mse"] = float(((out[:, 0] - y) ** 2).mean())
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
