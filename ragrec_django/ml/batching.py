"""Batch helpers: forward passes in chunks that halve on CUDA OOM, and the process pool decoding may use."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from .lazy import LazyModule

torch = LazyModule("torch")


class OomBackoff:
    """Splits batches into chunks of ``batch_size`` rows and shrinks it on CUDA OOM.

    The reduced size is kept for later batches, so one encoding run hits OOM
    only as often as it takes to find a size that fits. A chunk of one row
    that still does not fit re-raises ``torch.cuda.OutOfMemoryError``.

        backoff = OomBackoff(256)
        vectors = backoff.run(model.encode_image, pixels)
    """

    def __init__(self, batch_size: int):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1, got %r." % (batch_size,))
        self.batch_size = batch_size

    def run(self, forward: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
        """Return ``forward(*inputs)`` computed chunk by chunk along the first dimension."""
        total = len(inputs[0])
        outputs = []
        start = 0
        while start < total:
            size = min(self.batch_size, total - start)
            out_of_memory = False
            try:
                outputs.append(forward(*(tensor[start : start + size] for tensor in inputs)))
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise
                out_of_memory = True
            if out_of_memory:
                # Outside the except block, so the failed attempt's tensors are already freed.
                self.batch_size = size // 2
                torch.cuda.empty_cache()
                continue
            start += size
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]


_process_pools: dict[int, tuple[int, ProcessPoolExecutor]] = {}  # workers -> (owner pid, pool)
_process_pools_lock = threading.Lock()


def shared_process_pool(workers: int) -> ProcessPoolExecutor:
    """This process's pool of ``workers`` processes: started on first use, then reused by every call.

    Its processes start from a fork server (spawned where there is none), never as forks of this
    process, which may hold threads, CUDA or open connections. A process forked from this one after
    the pool was made (a prefork worker) starts its own on first use.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1, got %r." % (workers,))
    with _process_pools_lock:
        owner, pool = _process_pools.get(workers, (None, None))
        if pool is None or owner != os.getpid():
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
            _process_pools[workers] = (os.getpid(), pool)
        return pool


def discard_process_pool(pool: ProcessPoolExecutor) -> None:
    """Forget ``pool`` (broken: one of its processes died) so that the next call starts a new one."""
    with _process_pools_lock:
        for workers, (owner, kept) in list(_process_pools.items()):
            if kept is pool and owner == os.getpid():
                del _process_pools[workers]
    pool.shutdown(wait=False, cancel_futures=True)
