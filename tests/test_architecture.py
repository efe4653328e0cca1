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


def offenders(packages: tuple[str, ...], forbidden: set[str]) -> dict[str, list[str]]:
    """Each module of `packages` that imports one of `forbidden`, and which."""
    found = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & forbidden)
        for package in packages
        for path in (ROOT / package).rglob("*.py")
    }
    return {module: names for module, names in found.items() if names}


def test_domain_imports_nothing_from_the_other_layers_or_io_libraries():
    assert offenders(("domain",), FORBIDDEN_IN_DOMAIN) == {}


def test_persistence_does_not_import_the_graphql_layers():
    assert offenders(("persistence",), {"schema", "resolvers", "strawberry", "agencyhub"}) == {}


def test_schema_imports_nothing_from_persistence():
    # schema -> resolvers -> persistence: the GraphQL types know use cases, not tables
    assert offenders(("schema",), {"persistence"}) == {}


def test_resolvers_schema_and_the_shell_import_no_sqlalchemy():
    # SQL and SQLAlchemy's exceptions stay in persistence/ (e.g. UniqueViolation, agency_exists)
    assert offenders(("resolvers", "schema", "agencyhub"), {"sqlalchemy"}) == {}


def test_checked_in_schema_matches_the_code():
    # when this fails: run `make schema` (agencyhub export-schema) and commit schema.graphql
    assert (ROOT / "schema.graphql").read_text() == build_schema().as_str() + "\n"
