#!/bin/sh
# Create the secret files docker-compose.yml mounts (deploy/secrets/*), with random values.
# Existing files are kept, so running it again never changes a password a volume already uses.
# The directory is 0700: only you can read the secrets on the host. The files inside are 0644
# because compose bind-mounts them as they are and the containers run as unprivileged users.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 700 secrets

random() {  # $1 characters from [A-Za-z0-9]
    LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$1"
}

write() {  # write secrets/$1 with $2 unless it exists
    if [ -s "secrets/$1" ]; then
        echo "kept    secrets/$1"
    else
        printf '%s\n' "$2" >"secrets/$1"
        echo "created secrets/$1"
    fi
    chmod 644 "secrets/$1"
}

write postgres_password "$(random 32)"
pg_password=$(cat secrets/postgres_password)
write database_url "postgresql+psycopg://pseudoword:${pg_password}@postgres:5432/pseudoword"
write minio_root_user "root-$(random 12)"
write minio_root_password "$(random 40)"
write s3_access_key "pseudoword-$(random 12)"
write s3_secret_key "$(random 40)"
write admin_token "pw_$(random 43)"
echo "The admin token (for PSEUDOWORD_TOKEN) is in $(pwd)/secrets/admin_token"
