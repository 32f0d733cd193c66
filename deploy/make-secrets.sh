#!/bin/sh
# Writes the secret files docker-compose.yml mounts, under deploy/secrets/ (or the directory
# given): a random PostgreSQL password, Redis password and kill-switch HMAC secret, and the
# URLs that carry the passwords. Nothing secret is ever in the image, the compose file or .env.
#
# A file that exists is kept, so running this again changes nothing; delete a file to renew it
# (PostgreSQL takes its password once, when its volume is first created: renewing
# postgres_password later needs ALTER USER as well).
set -eu

dir="${1:-$(dirname "$0")/secrets}"
umask 077
mkdir -p "$dir"
# The files are bind-mounted into containers whose users are not you, so each file is
# world-readable; this directory is what keeps everyone else on this host out.
chmod 700 "$dir"

random_hex() {
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
}

# write NAME VALUE: only when NAME does not exist yet.
write() {
    if [ ! -e "$dir/$1" ]; then
        printf '%s\n' "$2" >"$dir/$1"
        chmod 644 "$dir/$1"
        echo "wrote $dir/$1"
    fi
}

if [ -s "$dir/postgres_password" ]; then
    pg=$(head -n 1 "$dir/postgres_password")
else
    pg=$(random_hex)
fi
if [ -s "$dir/redis_conf" ]; then
    redis=$(sed -n 's/^requirepass //p' "$dir/redis_conf")
else
    redis=$(random_hex)
fi

write postgres_password "$pg"
write redis_conf "requirepass $redis"
# tradeflow reads its own from /run/secrets, named after their TRADEFLOW_* variables.
write tradeflow_database_url "postgresql+psycopg://tradeflow:$pg@postgres:5432/tradeflow"
write tradeflow_redis_url "redis://:$redis@redis:6379/0"
write tradeflow_kill_switch_secret "$(random_hex)"
# Prefect's server (asyncpg) and MLflow's tracking store, each in its own database.
write prefect_database_url "postgresql+asyncpg://tradeflow:$pg@postgres:5432/prefect"
write mlflow_backend_store_uri "postgresql+psycopg://tradeflow:$pg@postgres:5432/mlflow"
