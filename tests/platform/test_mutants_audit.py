"""Tests that kill the surviving mutants of govtrust.audit (docs/testing.md)."""
