"""Tests that kill the surviving mutants of license.document_check (docs/testing.md)."""
