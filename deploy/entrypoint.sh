#!/usr/bin/env bash
# The Vigil image's entry point: deploy/entrypoint.sh ROLE [ARGS...]
#
#   worker      vigil worker [ARGS]          metrics, /livez, /readyz on :9101
#   aggregator  vigil aggregator [ARGS]      :9102
#   camera      vigil camera ARGS            :9103 (--source, --driver, --vehicle, ...)
#   dashboard   vigil dashboard --host 0.0.0.0 [ARGS]   Streamlit :8501, health side port :9104
#   api         vigil api [ARGS]             read API :8600 (/healthz, /readyz), 0.0.0.0
#   migrate     vigil db migrate             the database schema, then exits
#   vigil       vigil ARGS                   any one-shot command (users add, api keys create, ...)
#   shell       bash [ARGS]                  a shell with the same environment
#
# In a container the services must be reachable from outside it: VIGIL_METRICS__HOST and
# VIGIL_API__HOST default to 0.0.0.0 here (the package's default is 127.0.0.1); a value set
# by the operator wins. Secrets may come from files: VIGIL_<NAME>_FILE=/run/secrets/x sets
# VIGIL_<NAME> to the file's content (trailing newlines dropped), e.g.
# VIGIL_DATABASE__URL_FILE for VIGIL_DATABASE__URL; setting both is an error. The role's
# process replaces this script (exec), so SIGTERM and SIGINT reach it directly.
set -euo pipefail

ROLES="worker aggregator camera dashboard api migrate vigil shell"

fail() {
  printf 'vigil: error: %s\n' "$1" >&2
  exit 2
}

usage() {
  printf 'usage: entrypoint.sh ROLE [ARGS...]\nroles: %s\n' "${ROLES// /, }" >&2
}

# VIGIL_*_FILE -> VIGIL_*: the value is never printed.
load_secret_files() {
  local name var file value
  while IFS= read -r name; do
    var=${name%_FILE}
    file=${!name}
    if [[ -n "${!var+set}" ]]; then
      fail "both $var and $name are set: set only one"
    fi
    if [[ ! -f "$file" || ! -r "$file" ]]; then
      fail "$name names $file, which is not a readable file"
    fi
    value=$(<"$file")
    export "$var=$value"
    unset "$name"
  done < <(compgen -e | grep -E '^VIGIL_[A-Z0-9_]+_FILE$' || true)
}

role=${1:-}
if [[ $# -gt 0 ]]; then
  shift
fi

case "$role" in
  worker | aggregator | camera | dashboard | api | migrate | vigil | shell) ;;
  "" | -h | --help | help)
    usage
    [[ -n "$role" ]] && exit 0
    fail "no role given"
    ;;
  *)
    usage
    fail "unknown role '$role' (choose one of: ${ROLES// /, })"
    ;;
esac

load_secret_files
export VIGIL_METRICS__HOST="${VIGIL_METRICS__HOST:-0.0.0.0}"

case "$role" in
  worker | aggregator | camera)
    exec vigil "$role" "$@"
    ;;
  dashboard)
    # `vigil dashboard` takes its address from --host only; a later --host in ARGS wins.
    exec vigil dashboard --host 0.0.0.0 "$@"
    ;;
  api)
    export VIGIL_API__HOST="${VIGIL_API__HOST:-0.0.0.0}"
    exec vigil api "$@"
    ;;
  migrate)
    exec vigil db migrate "$@"
    ;;
  vigil)
    exec vigil "$@"
    ;;
  shell)
    exec bash "$@"
    ;;
esac
