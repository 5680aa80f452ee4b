"""Item URLs the mirror keeps: paths on the site and http(s) links, nothing a browser would run."""

import pytest

from ragrec_django.adapters import safe_link


@pytest.mark.parametrize(
    "url, kept",
    [
        ("/products/12/", "/products/12/"),
        ("https://shop.example/p/12", "https://shop.example/p/12"),
        ("HTTP://shop.example/p/12", "HTTP://shop.example/p/12"),
        ("products/12", "products/12"),
        ("javascript:alert(1)", ""),
        (" JavaScript:alert(1)", ""),
        ("data:text/html,<script>alert(1)</script>", ""),
        ("vbscript:msgbox", ""),
        ("//evil.example/x", ""),
        ("\\\\evil.example/x", ""),
        ("", ""),
    ],
)
def test_only_site_paths_and_http_links_are_kept(url, kept):
    assert safe_link(url) == kept
