"""Tests, one folder per package they test (tests/runner/ for paradigms/runner/, ...); what
they share is in helpers.py, the ``out`` fixture in conftest.py."""
