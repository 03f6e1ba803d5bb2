"""The committed OpenAPI dump and schema doc match the code (`make docs` regenerates them)."""

from app.docs.__main__ import DOCS, openapi_json, schema_markdown


def test_openapi_dump_is_current():
    assert (DOCS / "openapi.json").read_text() == openapi_json(), "run `make docs`"


def test_db_schema_doc_is_current():
    assert (DOCS / "db_schema.md").read_text() == schema_markdown(), "run `make docs`"
