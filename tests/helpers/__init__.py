"""Helpers shared by several kinds of test (imported as ``tests.helpers.<module>``)."""
