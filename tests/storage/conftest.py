"""Fixtures of the storage tests: the services' encoded catalogue (keyword search reads its item mirror)."""

from tests.services.conftest import catalogue  # noqa: F401  (the encoded catalogue fixture, reused)
