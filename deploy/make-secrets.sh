#!/usr/bin/env bash
# Writes the secrets deploy/compose.yaml mounts, as files in deploy/secrets/ (or DIR):
#   postgres_password         a random password for PostgreSQL's user vigil
#   database_url              VIGIL_DATABASE__URL with that password (host postgres)
#   dashboard_admin_password  VIGIL_DASHBOARD__ADMIN_PASSWORD: the dashboard's first admin
#   webhook_endpoints         VIGIL_WEBHOOKS__ENDPOINTS: [] (no webhook) until you edit it,
#                             e.g. [{"name": "tms", "url": "https://...", "secrets": ["whsec_..."]}]
# Usage: deploy/make-secrets.sh [DIR]. An existing file is kept, never overwritten.
# The directory is private (700); the files are 644 so that the containers' own users
# (PostgreSQL's, Vigil's 10001) can read them: compose mounts them as they are on the host.
set -euo pipefail
dir=${1:-"$(dirname "$0")/secrets"}
mkdir -p "$dir"
chmod 700 "$dir"

random() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

write() {  # write NAME VALUE: unless the file exists
  local file="$dir/$1"
  if [[ -e "$file" ]]; then
    echo "kept    $file"
    return
  fi
  (umask 022 && printf '%s\n' "$2" > "$file")
  echo "written $file"
}

write postgres_password "$(random)"
write database_url "postgresql+psycopg://vigil:$(head -n1 "$dir/postgres_password")@postgres:5432/vigil"
write dashboard_admin_password "$(random)"
write webhook_endpoints "[]"
echo "the dashboard's login: admin / the password in $dir/dashboard_admin_password"
