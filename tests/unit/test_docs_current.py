"""The committed OpenAPI dumps and schema doc match the code (`make docs` regenerates them)."""

import json

import yaml

from app.docs.__main__ import DOCS, openapi_json, openapi_yaml, schema_markdown


def test_openapi_dumps_are_current():
    assert (DOCS / "openapi.json").read_text() == openapi_json(), "run `make docs`"
    assert (DOCS / "openapi.yaml").read_text() == openapi_yaml(), "run `make docs`"
    assert yaml.safe_load(openapi_yaml()) == json.loads(openapi_json())


def test_db_schema_doc_is_current():
    assert (DOCS / "db_schema.md").read_text() == schema_markdown(), "run `make docs`"
