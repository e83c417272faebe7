"""Where the code runs: one device, or several processes under torchrun with PyTorch's
DistributedDataParallel (gloo on CPU, nccl on CUDA). Every helper is a no-op for one process."""
import os

import torch
import torch.distributed as dist


def get_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def ddp_setup():
    """(rank, world_size, device). Under torchrun (RANK set) joins the process group; alone, (0, 1, device)."""
    if "RANK" not in os.environ:
        return 0, 1, get_device()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    return dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{os.environ['LOCAL_RANK']}" if cuda else "cpu")


def ddp_teardown():
    """Leave the process group (torchrun) before the interpreter exits; alone, nothing."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def ddp_wrap(model, world_size):
    return torch.nn.parallel.DistributedDataParallel(model) if world_size > 1 else model


def all_mean(x, world_size):
    """Mean of a float over ranks (metrics and logs agree on every rank)."""
    if world_size == 1:
        return float(x)
    t = torch.tensor(float(x), dtype=torch.float64)
    dist.all_reduce(t)
    return t.item() / world_size


def all_sum(x, world_size):
    if world_size == 1:
        return float(x)
    t = torch.tensor(float(x), dtype=torch.float64)
    dist.all_reduce(t)
    return t.item()


def all_min(x, world_size):
    if world_size == 1:
        return x
    t = torch.tensor(float(x), dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t.item()


def gather_objects(obj, world_size):
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if world_size == 1:
        return [obj]
    out = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(world_size):
    if world_size > 1:
        dist.barrier()
