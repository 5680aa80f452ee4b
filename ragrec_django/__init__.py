"""ragrec_django: multimodal, retrieval-augmented recommendations for Django shops.

Importing this package touches no Django settings; add "ragrec_django" to
INSTALLED_APPS and configure ``settings.RAGREC`` (see ragrec_django.conf).
"""

__version__ = "0.1.0"
