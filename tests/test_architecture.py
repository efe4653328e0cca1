"""The layering rule and the checked-in schema are enforced, not hoped for."""

import ast
from pathlib import Path

from schema import build_schema

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_DOMAIN = {
    "sqlalchemy",
    "strawberry",
    "redis",
    "stripe",
    "starlette",
    "asyncpg",
    "aiosqlite",
    "persistence",
    "resolvers",
    "schema",
    "agencyhub",
    "graphql",
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_domain_imports_nothing_from_the_other_layers_or_io_libraries():
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN_IN_DOMAIN)
        for path in (ROOT / "domain").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_persistence_does_not_import_the_graphql_layers():
    for path in (ROOT / "persistence").rglob("*.py"):
        assert not imported_roots(path) & {"schema", "resolvers", "strawberry", "agencyhub"}, path


def test_checked_in_schema_matches_the_code():
    # when this fails: run `make schema` (agencyhub export-schema) and commit schema.graphql
    assert (ROOT / "schema.graphql").read_text() == build_schema().as_str() + "\n"
