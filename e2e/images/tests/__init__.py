"""Tests of e2e/images/ocibuild."""
