#!/bin/sh
# secret-env.sh NAME=FILE... -- COMMAND [ARG...]
#
# Runs COMMAND with each variable NAME set to the contents of its secret FILE, for programs
# that take a secret from their environment only (Prefect's and MLflow's database URLs).
# FILE is a name under TRADEFLOW_SECRETS_DIR (default /run/secrets, where Compose mounts a
# service's secrets). A missing or empty file stops here, naming it, before COMMAND starts.
set -eu

dir="${TRADEFLOW_SECRETS_DIR:-/run/secrets}"
usage="usage: secret-env.sh NAME=FILE... -- COMMAND [ARG...]"

while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
    *=*) ;;
    *)
        echo "secret-env.sh: expected NAME=FILE, got '$1'; $usage" >&2
        exit 2
        ;;
    esac
    name="${1%%=*}"
    path="$dir/${1#*=}"
    case "$name" in
    '' | [0-9]* | *[!A-Za-z0-9_]*)
        echo "secret-env.sh: '$name' is not a variable name" >&2
        exit 2
        ;;
    esac
    if [ ! -s "$path" ]; then
        echo "secret-env.sh: secret file $path is missing or empty" >&2
        exit 1
    fi
    value=$(cat "$path") # the command substitution drops the trailing newline
    export "$name=$value"
    shift
done

if [ "$#" -lt 2 ]; then
    echo "secret-env.sh: no command after --; $usage" >&2
    exit 2
fi
shift
exec "$@"
