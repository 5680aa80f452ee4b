import pytest
import torch

from ragrec_django.ml import devices
from ragrec_django.ml.devices import check_device_name, resolve_device, resolve_dtype


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, no_accelerator):
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("AUTO") == torch.device("cuda")


def test_explicit_devices(one_gpu):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        resolve_device("cuda:1")


def test_missing_accelerators_are_errors_not_fallbacks(no_accelerator):
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize("bad", ["gpu", "tpu", "cuda:x", "", None, 3])
def test_bad_device_names(bad):
    with pytest.raises(ValueError):
        check_device_name(bad)


@pytest.mark.parametrize(
    "name",
    ["cpu", "cuda", "mps", "cpu:0", "cuda:0", "cuda:12", "mps:1"]
    + ["cuda:01", "cuda:-1", "cuda:", "cuda: 0", "cuda:0:1", "cuda:+1", "xpu", "meta"],
)
def test_device_names_are_checked_like_torch_parses_them(name):
    """check_device_name parses without torch; it must accept exactly what torch.device does (cpu, cuda, mps)."""
    try:
        torch_accepts = torch.device(name).type in ("cpu", "cuda", "mps")
    except RuntimeError:
        torch_accepts = False
    try:
        accepted = check_device_name(name) == name
    except ValueError:
        accepted = False
    assert accepted == torch_accepts


def test_torch_devices_are_accepted():
    assert check_device_name(torch.device("cuda", 1)) == "cuda:1"
    assert check_device_name(torch.device("cpu")) == "cpu"


def test_precision():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("auto", cuda) == torch.float16
    assert resolve_dtype("fp32", cuda) == torch.float32
    assert resolve_dtype("BF16", cpu) == torch.bfloat16
    assert resolve_dtype("fp16", cpu) == torch.float16
    for bad in ("int8", "half", None):
        with pytest.raises(ValueError, match="precision"):
            resolve_dtype(bad, cpu)


def test_precisions_table_is_built_on_demand():
    assert devices.PRECISIONS == {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
