"""Tests of the e2e/lib Python tools."""
