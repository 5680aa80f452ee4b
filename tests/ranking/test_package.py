"""The ranking layer stays pure: importing it loads no Django."""

import subprocess
import sys


def test_ranking_imports_without_django():
    code = "import sys, ragrec_django.ranking; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
