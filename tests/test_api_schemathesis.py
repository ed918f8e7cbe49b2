"""Property-based tests of the API from its own OpenAPI document (schemathesis), over the loaded warehouse.

Fixed seed, derandomized, a bounded number of examples per operation: every response must be documented
(status, content type, body schema) and none may be a server error.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import create_app
from tools.db import conninfo

pytestmark = pytest.mark.e2e
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(warehouse):
    app = create_app({"conninfo": conninfo(warehouse.pg)})
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_every_response_is_documented_and_no_server_error(api_schema):
    # schemathesis' own pytest integration does not run under pytest 9 yet; its Hypothesis strategies do.
    tested = []
    for operation in operations(api_schema):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case):
            case.call_and_validate(checks=CHECKS)

        check()
        tested.append(operation.label)
    assert len(tested) >= 9, tested
