"""Tests that kill the surviving mutants of license.checking (docs/testing.md)."""
