"""No image can take the server's memory: every hostile image of the corpus (tests/hardening/image_corpus.py,
every format on the allow-list) is decoded by ``load_pixels`` - the path of search by photo, the storefront's
photo form and product-image encoding - in a fresh interpreter, and the peak memory the decode adds stays
under ``MEMORY_BOUND``. The result is a normal 224 x 224 array or the named ``ImageDecodeError``.

Before the bound existed, the 4,000,000 x 10 PNG alone took ~9 GB and 55 s, and a 16-bit or float image
560-680 MB. No test here times anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragrec_django.ml.images import DEFAULT_MAX_IMAGE_PIXELS, MAX_DECODE_BYTES, MAX_IMAGE_ASPECT, MAX_IMAGE_SIDE

from .image_corpus import CASES, OK

MB = 1024 * 1024
SLACK = 16 * MB  # allocator rounding, Python objects and library buffers the estimate leaves out
MEMORY_BOUND = MAX_DECODE_BYTES + SLACK
ESTIMATE_SLACK = 8 * MB
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc (Linux)")


def decode_in_fresh_process(path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("measure_decode.py")), str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout)


@pytest.mark.parametrize("name", list(CASES))
def test_decoding_a_hostile_image_stays_under_the_memory_bound(name, tmp_path):
    build, expected = CASES[name]
    path = tmp_path / name
    path.write_bytes(build())
    result = decode_in_fresh_process(path)

    assert result["peak"] <= MEMORY_BOUND, "%s: the decode added %.1f MB" % (name, result["peak"] / MB)
    if expected == OK:
        assert result.get("shape") == [224, 224, 3], result
    else:
        assert expected in result.get("error", ""), result
    if result["estimate"] is not None:  # the estimate the limit is checked against is an upper bound
        assert result["peak"] <= result["estimate"] + ESTIMATE_SLACK, (name, result)


def test_the_reliability_doc_states_the_limits_the_code_uses():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    section = doc[doc.index("## Hostile images") :]
    section = section[: section.index("\n## ", 1)]
    for row in (
        "| pixels | `DEFAULT_MAX_IMAGE_PIXELS` (encoder option `max_image_pixels`) | %s |"
        % f"{DEFAULT_MAX_IMAGE_PIXELS:,}",
        "| either side | `MAX_IMAGE_SIDE` | %s px |" % f"{MAX_IMAGE_SIDE:,}",
        "| elongation (long side / short side) | `MAX_IMAGE_ASPECT` | %d:1 |" % MAX_IMAGE_ASPECT,
        "| memory one decode holds at once | `MAX_DECODE_BYTES` | %d MiB |" % (MAX_DECODE_BYTES // MB),
    ):
        assert row in section, row
    assert "%d images built in code" % len(CASES) in section
