#!/bin/sh
# Container entrypoint: turn file-based secrets into the settings the server reads, then run the
# command (default: `pseudoword serve`).
#
# Docker and Kubernetes hand secrets over as files (/run/secrets/...). For each setting below,
# PSEUDOWORD_<NAME>_FILE=/path makes PSEUDOWORD_<NAME> the file's content (trailing newline
# dropped), so passwords never sit in the compose file, the image or `docker inspect`.
# PSEUDOWORD_ADMIN_TOKEN_FILE needs nothing here: the server reads that file itself.
set -eu

for name in DATABASE_URL S3_ACCESS_KEY S3_SECRET_KEY; do
    file_var="PSEUDOWORD_${name}_FILE"
    eval "file=\${${file_var}:-}"
    [ -n "$file" ] || continue
    eval "direct=\${PSEUDOWORD_${name}:-}"
    if [ -n "$direct" ]; then
        echo "docker-entrypoint: set PSEUDOWORD_${name} or ${file_var}, not both" >&2
        exit 64
    fi
    if [ ! -r "$file" ]; then
        echo "docker-entrypoint: ${file_var} names ${file}, which is not a readable file" >&2
        exit 66
    fi
    value=$(cat "$file")
    export "PSEUDOWORD_${name}=${value}"
    unset "$file_var"
done

exec "$@"
