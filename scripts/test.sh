#!/usr/bin/env bash
# The whole test command, also on a fresh machine: virtualenv, install, local brokers, ruff, mypy, pytest.
#
#   scripts/test.sh [PYTEST_ARGS...]      (what `make test` runs)
#
# Environment: NERVE_VENV (<repo>/.venv), NERVE_KAFKA_PORT, NERVE_MQTT_PORT, NERVE_SECURE_KAFKA_PORT,
# NERVE_SECURE_MQTT_PORT and the other variables of scripts/brokers.sh. Both pairs of brokers are started:
# the plain one and the secured one (`brokers.sh start --secure`, for tests/integration/test_security.py).
# Brokers that were already up are left running; the ones started here are stopped.
set -euo pipefail

# shellcheck source=scripts/venv.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/venv.sh"
BROKERS=$REPO/scripts/brokers.sh

STARTED=()
SECURE_STARTED=()
stop_started_brokers() {
	local rc=$? broker
	for broker in "${STARTED[@]}"; do
		bash "$BROKERS" stop "$broker" || true
	done
	for broker in "${SECURE_STARTED[@]}"; do
		bash "$BROKERS" stop "$broker" --secure || true
	done
	exit "$rc"
}

start_brokers() {
	local broker
	for broker in kafka mqtt; do
		if ! bash "$BROKERS" status "$broker" >/dev/null; then STARTED+=("$broker"); fi
		if ! bash "$BROKERS" status "$broker" --secure >/dev/null; then SECURE_STARTED+=("$broker"); fi
	done
	if ((${#STARTED[@]} == 0)); then
		step "brokers already running; they stay up afterwards"
	else
		step "starting ${STARTED[*]} (stopped again at the end)"
		bash "$BROKERS" start
	fi
	if ((${#SECURE_STARTED[@]} == 0)); then
		step "secured brokers already running; they stay up afterwards"
	else
		step "starting the secured ${SECURE_STARTED[*]} (stopped again at the end)"
		bash "$BROKERS" start --secure
	fi
}

# tests/unit/test_compose_file.py checks docker/docker-compose.yml with `docker compose config` or, where the
# Compose plugin is missing (our machines), Debian's docker-compose; a fresh machine has neither.
ensure_compose() {
	if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then return 0; fi
	command -v docker-compose >/dev/null && return 0
	command -v apt-get >/dev/null || die "neither 'docker compose' nor docker-compose is installed, and apt-get is not available"
	step "installing docker-compose with apt-get (to check docker/docker-compose.yml)"
	if [[ $EUID -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
	"${SUDO[@]}" apt-get update -qq
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
	command -v docker-compose >/dev/null || die "docker-compose is still missing after apt-get install docker-compose"
}

ensure_venv
ensure_install
ensure_compose

# The launcher's readiness check asks Kafka for metadata through this venv's aiokafka.
export NERVE_PYTHON=$VENV/bin/python
export NERVE_KAFKA_BOOTSTRAP=127.0.0.1:${NERVE_KAFKA_PORT:-9092}
export NERVE_MQTT_HOST=127.0.0.1
export NERVE_MQTT_PORT=${NERVE_MQTT_PORT:-1883}
export NERVE_SECURE_KAFKA_BOOTSTRAP=127.0.0.1:${NERVE_SECURE_KAFKA_PORT:-29092}
export NERVE_SECURE_MQTT_HOST=127.0.0.1
export NERVE_SECURE_MQTT_PORT=${NERVE_SECURE_MQTT_PORT:-28883}

trap stop_started_brokers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start_brokers

step "ruff check ."
"$VENV/bin/ruff" check .
step "mypy"
"$VENV/bin/mypy"
step "pytest $*"
"$VENV/bin/pytest" "$@"
