"""Django settings of the web server ``serve_load.py`` starts: the demo's, with the benchmark's encoders.

``SERVE_LOAD_RAGREC`` (JSON) replaces keys of ``RAGREC``: the encoders and spaces the catalogue was
loaded for, no automatic encoding, no API throttling (every client comes from 127.0.0.1).
"""

import json
import os

from shop_demo.settings import *  # noqa: F401,F403
from shop_demo.settings import RAGREC

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
RAGREC = {**RAGREC, **json.loads(os.environ.get("SERVE_LOAD_RAGREC", "{}"))}
