"""Run by tests/hardening/test_image_memory.py in a fresh interpreter: decode one file as the server does.

Prints JSON: ``shape`` of the pixels or ``error`` (the ``ImageDecodeError`` reason), ``peak`` (bytes the
decode added to this process's peak resident set), and ``estimate`` (what ``estimated_decode_bytes``
predicted, when the image got that far).

The peak is VmHWM from /proc/self/status, not ``getrusage().ru_maxrss``: on Linux a child's ru_maxrss
starts at its parent's resident set (it survives fork and exec), so under a test runner of 1 GB it would
hide any decode smaller than that.
"""

import io
import json
import sys

from PIL import Image

from ragrec_django.ml import images


def peak_resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(path: str) -> None:
    policy = images.ImagePolicy.build()
    preprocessing = images.Preprocessing.from_open_clip({"size": 224, "mean": (0.5,) * 3, "std": (0.5,) * 3})
    warm_up = io.BytesIO()
    Image.new("RGB", (300, 200)).save(warm_up, "PNG")
    images.load_pixels(warm_up.getvalue(), policy, preprocessing)  # plugins and numpy paths load before the baseline

    estimates = []
    estimate = images.estimated_decode_bytes

    def recorded(*args, **kwargs):
        estimates.append(estimate(*args, **kwargs))
        return estimates[-1]

    images.estimated_decode_bytes = recorded
    with open(path, "rb") as file:
        data = file.read()
    baseline = peak_resident_bytes()
    try:
        result = {"shape": list(images.load_pixels(data, policy, preprocessing).shape)}
    except images.ImageDecodeError as exc:
        result = {"error": exc.reason}
    result["peak"] = peak_resident_bytes() - baseline
    result["estimate"] = estimates[0] if estimates else None
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
