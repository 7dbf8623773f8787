#!/usr/bin/python3
"""Baseline for tools/bench/allreduce: torch.distributed all_reduce with the
gloo backend over N processes on 127.0.0.1. Prints one JSON object per size:
{"impl": "gloo", "bytes", "nodes", "iterations", "us_per_op"}."""
import argparse
import json
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world, port, sizes, iterations, queue):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    for size in sizes:
        t = torch.ones(size // 4)
        n = iterations or max(20, min(2000, (256 << 20) // size))
        for _ in range(3):
            dist.all_reduce(t)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(n):
            dist.all_reduce(t)
        us = (time.perf_counter() - t0) * 1e6 / n
        if rank == 0:
            queue.put({"impl": "gloo", "bytes": size, "nodes": world,
                       "iterations": n, "us_per_op": us})
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--bytes", default="1048576,16777216")
    p.add_argument("--iterations", type=int, default=0)
    a = p.parse_args()
    sizes = [int(x) for x in a.bytes.split(",")]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker,
                         args=(r, a.nodes, port, sizes, a.iterations, queue))
             for r in range(a.nodes)]
    for pr in procs:
        pr.start()
    for _ in sizes:
        print(json.dumps(queue.get(timeout=600)), flush=True)
    for pr in procs:
        pr.join(timeout=60)
        if pr.is_alive():
            pr.kill()


if __name__ == "__main__":
    main()
