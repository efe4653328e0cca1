"""The GraphQL schema: strawberry types and roots, one module per domain, and `build_schema`."""

from schema.roots import build_schema

__all__ = ["build_schema"]
