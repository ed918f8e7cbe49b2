"""singer-sdk's standard target tests against a real PostgreSQL (the PG* variables), run by the loader's own
virtualenv: tests/test_loader.py starts them, as the loader's packages are not in the project's .venv."""

from __future__ import annotations

from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.suites import SingerTestSuite, target_tests
from singer_sdk.testing.target_tests import TargetEncodedStringData
from target_postgres_raw import TargetPostgresRaw

# An empty URL: psycopg takes the server from the PG* variables, as in meltano.yml.
CONFIG = {
    "sqlalchemy_url": "postgresql+psycopg://",
    "default_target_schema": "sdk_standard",
    "use_copy": True,
    "add_record_metadata": True,
}
# Every standard test but one: PostgreSQL text cannot hold the NUL character that test sends (MeltanoLabs'
# target-postgres leaves it out for the same reason; its stock target fails it the same way).
STANDARD = SingerTestSuite(
    kind="target", tests=[test for test in target_tests.tests if test is not TargetEncodedStringData]
)

TestTargetPostgresRaw = get_target_test_class(
    target_class=TargetPostgresRaw, config=CONFIG, custom_suites=[STANDARD], include_target_tests=False
)
