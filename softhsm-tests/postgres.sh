#!/usr/bin/env bash
# Start PostgreSQL 15 (Debian's cluster 15/main) if it is not running, and make a throwaway
# database for this test run. Source it:
#
#   . softhsm-tests/postgres.sh        # sets SIGIL_TEST_DATABASE_URL and PG_TEST_DB
#   pg_test_drop                       # drops the database again
#
# The role `sigil_test` (password in target/pg-test-password) owns the test databases; nothing
# else in the cluster is touched.
set -euo pipefail
bash "$(dirname "${BASH_SOURCE[0]}")/../deploy/ensure-packages.sh" postgresql
if ! pg_lsclusters -h | awk '$1 == 15 && $2 == "main"' | grep -q .; then
  pg_createcluster 15 main >/dev/null
fi
if ! pg_lsclusters -h | awk '$1 == 15 && $2 == "main" && $4 == "online"' | grep -q .; then
  pg_ctlcluster 15 main start
fi
pg_port=$(pg_lsclusters -h | awk '$1 == 15 && $2 == "main" {print $3}')
as_postgres() { (cd / && su postgres -c "psql -p $pg_port -v ON_ERROR_STOP=1 -qAtX $*"); }
mkdir -p target
pw_file=target/pg-test-password
[ -s "$pw_file" ] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$pw_file"
pw=$(cat "$pw_file")
if [ "$(as_postgres "-c \"SELECT 1 FROM pg_roles WHERE rolname = 'sigil_test'\"")" != 1 ]; then
  as_postgres "-c \"CREATE ROLE sigil_test LOGIN CREATEDB PASSWORD '$pw'\""
else
  as_postgres "-c \"ALTER ROLE sigil_test PASSWORD '$pw'\""
fi
PG_TEST_DB="sigil_test_$$_$(date +%s)"
as_postgres "-c \"CREATE DATABASE $PG_TEST_DB OWNER sigil_test\""
export PG_TEST_DB PG_TEST_PORT=$pg_port
export SIGIL_TEST_DATABASE_URL="postgres://sigil_test:$pw@127.0.0.1:$pg_port/$PG_TEST_DB?sslmode=disable"
pg_test_drop() { as_postgres "-c \"DROP DATABASE IF EXISTS $PG_TEST_DB WITH (FORCE)\"" || true; }
echo "PostgreSQL 15 on port $pg_port, test database $PG_TEST_DB"
