"""torch.distributed set-up through torchrun's environment variables (one process otherwise).

`torchrun --nproc_per_node N -m gep_ros.cli.main train ...` sets RANK, LOCAL_RANK and
WORLD_SIZE; without them the run is a single process and nothing distributed is touched.
NCCL on GPUs, gloo on CPUs (the tests run a 2-process gloo job).
"""

from dataclasses import dataclass
import os

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device('cpu')

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def init_distributed(device=None):
    """Join the torchrun process group if there is one; return where this process runs."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local = int(os.environ.get('LOCAL_RANK', '0'))
    if device is None:
        device = f'cuda:{local}' if torch.cuda.is_available() else 'cpu'
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    return DistInfo(rank, local, world, device)


def all_reduce_sum(tensor):
    """Sum a tensor over processes, in place (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def barrier():
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
