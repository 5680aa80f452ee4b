"""Run a forward pass in chunks, halving the chunk size when CUDA runs out of memory."""

from __future__ import annotations

from typing import Callable

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
