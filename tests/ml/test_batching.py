import pytest
import torch

from ragrec_django.ml.batching import OomBackoff


def forward_fitting(limit, calls):
    """A forward pass that runs out of CUDA memory above ``limit`` rows."""

    def forward(x, y):
        calls.append(len(x))
        if len(x) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return x * 2 + y

    return forward


def test_halves_on_oom_keeps_the_smaller_size_and_the_row_order():
    x, y = torch.arange(10.0), torch.ones(10)
    calls = []
    backoff = OomBackoff(8)
    out = backoff.run(forward_fitting(3, calls), x, y)
    torch.testing.assert_close(out, x * 2 + 1)
    assert backoff.batch_size == 2
    assert calls == [8, 4, 2, 2, 2, 2, 2]


def test_oom_with_a_single_row_is_raised():
    with pytest.raises(torch.cuda.OutOfMemoryError):
        OomBackoff(4).run(forward_fitting(0, []), torch.ones(4), torch.ones(4))


def test_other_errors_are_not_retried():
    calls = []

    def broken(x):
        calls.append(len(x))
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        OomBackoff(4).run(broken, torch.ones(8))
    assert calls == [4]


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError):
        OomBackoff(0)
