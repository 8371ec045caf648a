"""The worker of `gep bench gpu`'s torchrun smoke: one process group, all_reduce and a DDP step.

Run by `torchrun --standalone --nproc_per_node N -m gep_ros.bench.ddp_smoke --device cuda`
(the check starts it with N = 1). It joins the group torchrun describes (NCCL on a GPU, gloo
on the CPU), checks an all_reduce sums the ranks, times a few all_reduces of 16 MB, runs one
DistributedDataParallel step under autocast and checks its gradients agree and are finite.
Rank 0 prints one line `GEP_DDP_SMOKE {json}` that the check parses.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

MARK = 'GEP_DDP_SMOKE'


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def nccl_version():
    version = torch.cuda.nccl.version()
    return '.'.join(map(str, version)) if isinstance(version, tuple) else str(version)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m gep_ros.bench.ddp_smoke')
    parser.add_argument('--device', choices=('cuda', 'cpu'), default='cuda')
    args = parser.parse_args(argv)
    rank = int(os.environ['RANK'])
    world = int(os.environ['WORLD_SIZE'])
    local = int(os.environ.get('LOCAL_RANK', '0'))
    if args.device == 'cuda':
        device = torch.device(f'cuda:{local}')
        torch.cuda.set_device(device)
        backend = 'nccl'
    else:
        device = torch.device('cpu')
        backend = 'gloo'
    start = time.perf_counter()
    dist.init_process_group(backend)
    try:
        init_s = time.perf_counter() - start
        value = torch.full((4,), float(rank + 1), device=device)
        dist.all_reduce(value)
        expected = world * (world + 1) / 2
        if not torch.all(value == expected):
            raise RuntimeError(f'all_reduce gave {value.tolist()}, expected {expected}')
        big = torch.ones(4 * 1024 * 1024, device=device)  # 16 MB of float32
        dist.all_reduce(big)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for _ in range(5):
            dist.all_reduce(big)
        sync(device)
        reduce_ms = (time.perf_counter() - t0) / 5 * 1e3
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(),
                                    torch.nn.Linear(128, 8)).to(device)
        ddp = DistributedDataParallel(model, device_ids=[local] if device.type == 'cuda'
                                      else None)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == 'cuda'):
            loss = ddp(torch.randn(16, 64, device=device)).float().pow(2).mean()
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        if not torch.isfinite(grads).all():
            raise RuntimeError('DDP gradients are not finite')
        mean = grads.clone()
        dist.all_reduce(mean)
        if not torch.allclose(mean / world, grads, rtol=1e-4, atol=1e-6):
            raise RuntimeError('DDP gradients differ between ranks')
        dist.barrier()
        if rank == 0:
            print(MARK, json.dumps({
                'backend': backend, 'world_size': world, 'init_s': init_s,
                'all_reduce_16mb_ms': reduce_ms, 'ddp_loss': float(loss.detach()),
                'nccl': nccl_version() if backend == 'nccl' else None}), flush=True)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == '__main__':
    sys.exit(main())
