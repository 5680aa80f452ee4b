"""Importing the generators and constructing every backend imports neither torch nor transformers."""

import subprocess
import sys

SCRIPT = """
import os, sys, tempfile

from ragrec_django.ml.generation import GenerationError, GenerationRequest
from ragrec_django.ml.generators import FactsGenerator, OpenAICompatibleGenerator, TransformersGenerator

folder = tempfile.mkdtemp()
open(os.path.join(folder, "model.safetensors"), "wb").write(b"weights")
local = TransformersGenerator(model=folder, device="cuda:1", precision="bf16", max_new_tokens=8)
hub = TransformersGenerator(model="org/model", revision="main")
remote = OpenAICompatibleGenerator(base_url="http://localhost:11434/v1", model="llama3.2", timeout=5)
offline = FactsGenerator()
versions = [local.version, hub.version, remote.version, offline.version]
assert versions[0].startswith("transformers:") and "@sha256:" in versions[0], versions
offline.generate(GenerationRequest(task="description", messages=[], facts={"title": "Mug", "colour": "red"}))
try:
    TransformersGenerator(model="org/model", device="gpu")
except GenerationError:
    pass
else:
    raise AssertionError("accepted device 'gpu'")
print(" ".join(name for name in ("torch", "transformers", "tokenizers", "django") if name in sys.modules))
"""


def test_importing_and_building_generators_imports_no_torch():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], "imported while building generators: %s" % result.stdout
