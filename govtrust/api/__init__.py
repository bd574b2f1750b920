"""Thin gRPC and HTTP adapters, one module per service: parse, call domain code, map errors."""
