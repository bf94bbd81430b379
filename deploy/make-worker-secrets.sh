#!/bin/sh
# The worker's API key file for docker-compose.worker.yml (one key a line; made once, never
# overwritten, never committed). Prints nothing secret.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
if [ ! -f secrets/worker_api_keys ]; then
    python3 -c 'import secrets; print("rw_" + secrets.token_urlsafe(32))' > secrets/worker_api_keys
    echo "created secrets/worker_api_keys"
fi
