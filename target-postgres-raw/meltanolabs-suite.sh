#!/usr/bin/env bash
# MeltanoLabs target-postgres's own test suite with this loader in place of the stock target (README.md).
#
#   target-postgres-raw/meltanolabs-suite.sh TARGET_POSTGRES_REPO SDK_REPO [WORKDIR]
#
# TARGET_POSTGRES_REPO: a clone (or bare git dir) of github.com/MeltanoLabs/target-postgres;
# SDK_REPO: one of github.com/meltano/sdk (its packages/meltano-tap-countries and -fundamentals are the test taps).
# Runs against the PostgreSQL on localhost:5432 (user postgres, any password), database ml_suite (created),
# every test on an empty schema, the SSL and SSH-tunnel tests left out (they need servers set up for them).
# RAW=0 runs the stock target the same way, for comparison.
set -euo pipefail
target_repo=$1 sdk_repo=$2 work=${3:-$(mktemp -d)}
project=$(cd "$(dirname "$0")/.." && pwd)
uv=$project/.venv/bin/uv

git_dir() { if [ -d "$1/.git" ]; then echo "$1/.git"; else echo "$1"; fi; }
mkdir -p "$work/sdk"
git --git-dir="$(git_dir "$target_repo")" archive HEAD | tar x -C "$work"
git --git-dir="$(git_dir "$sdk_repo")" archive HEAD packages | tar x -C "$work/sdk"
cd "$work"
# The test taps name singer-sdk as a uv workspace member; outside the SDK's workspace it comes from the index.
for tap in meltano-tap-countries meltano-tap-fundamentals; do
  python3 - "sdk/packages/$tap/pyproject.toml" <<'EOF'
import re, sys
path = sys.argv[1]
text = open(path).read()
open(path, "w").write(re.sub(r"\[tool\.uv\.sources\][^\[]*", "", text))
EOF
done
"$uv" venv -q venv
VIRTUAL_ENV=$work/venv "$uv" pip install -q -c "$project/locks/target-postgres.txt" \
  meltanolabs-target-postgres==0.8.1 -e "$project/target-postgres-raw" -e "$project/pipeline-lock" pytest pgvector \
  ./sdk/packages/meltano-tap-countries ./sdk/packages/meltano-tap-fundamentals
# The suite's package is the released 0.8.1 (the checkout may be newer), with the suite's tests.
cp venv/lib/python3.*/site-packages/target_postgres/*.py target_postgres/
python3 - <<'EOF'
path = "target_postgres/tests/core.py"
text = open(path).read()
start, end = text.index("def postgres_config():"), text.index("def postgres_config_no_ssl():")
text = text[:start] + "def postgres_config():\n    return postgres_config_no_ssl()\n\n\n" + text[end:]
text = text.replace('"port": 5433,', '"port": 5432,')
text = text.replace('"database": "postgres",\n        "port": 5432,', '"database": "ml_suite",\n        "port": 5432,')
open(path, "w").write(text)
EOF
cat >> target_postgres/tests/conftest.py <<'EOF'


import pytest
import sqlalchemy

if os.environ.get("RAW", "1") == "1":
    import target_postgres.target
    from target_postgres_raw import TargetPostgresRaw

    target_postgres.target.TargetPostgres = TargetPostgresRaw  # what every test module imports


@pytest.fixture(autouse=True)
def _fresh_schema():
    """Every test on an empty schema: no test sees the tables an earlier one loaded."""
    engine = sqlalchemy.create_engine("postgresql+psycopg://postgres:postgres@localhost:5432/ml_suite")
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("drop schema if exists melty cascade"))
    engine.dispose()
EOF
psql -qh localhost -U postgres -d postgres -c "create database ml_suite" 2>/dev/null || true
PGPASSWORD=postgres venv/bin/python -m pytest -q -p no:cacheprovider target_postgres/tests -k "not ssl and not ssh"
