#!/bin/bash
# First start: initdb with POSTGRES_USER as the superuser and its password, create POSTGRES_DB; then run the server
# as `postgres`, listening on every interface with password authentication (as the official image does).
set -euo pipefail
chown postgres:postgres "$PGDATA"
chmod 0700 "$PGDATA"
if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  printf '%s\n' "$POSTGRES_PASSWORD" >/tmp/pwfile
  chown postgres /tmp/pwfile
  runuser -u postgres -- initdb -D "$PGDATA" -U "$user" --pwfile=/tmp/pwfile --auth-local=trust \
    --auth-host=scram-sha-256 >/dev/null
  rm -f /tmp/pwfile
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [[ "$db" != "postgres" ]]; then
    runuser -u postgres -- pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    echo 'CREATE DATABASE :"db" OWNER :"owner";' |
      runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -U "$user" -d postgres -v db="$db" -v owner="$user"
    runuser -u postgres -- pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
fi
# setpriv execs (runuser would stay as the parent): the server is PID 1 and gets the stop signal itself.
exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@" -D "$PGDATA"
