#!/bin/sh
# Run once by the postgres image when it creates the primary's cluster (/docker-entrypoint-initdb.d):
# lets the standby of deploy/docker-compose.yml stream WAL as user nexus (password-checked, compose network only).
set -eu
echo "host replication ${POSTGRES_USER} samenet scram-sha-256" >> "$PGDATA/pg_hba.conf"
