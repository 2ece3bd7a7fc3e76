#!/usr/bin/env bash
# The whole test command, also on a fresh machine: virtualenv, install, local brokers, ruff, mypy, pytest.
#
#   scripts/test.sh [PYTEST_ARGS...]      (what `make test` runs)
#
# Environment: NERVE_VENV (<repo>/.venv), NERVE_KAFKA_PORT, NERVE_MQTT_PORT and the other variables of
# scripts/brokers.sh. Brokers that were already up are left running; the ones started here are stopped.
set -euo pipefail

# shellcheck source=scripts/venv.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/venv.sh"
BROKERS=$REPO/scripts/brokers.sh

STARTED=()
stop_started_brokers() {
	local rc=$? broker
	for broker in "${STARTED[@]}"; do
		bash "$BROKERS" stop "$broker" || true
	done
	exit "$rc"
}

start_brokers() {
	local broker
	for broker in kafka mqtt; do
		if ! bash "$BROKERS" status "$broker" >/dev/null; then STARTED+=("$broker"); fi
	done
	if ((${#STARTED[@]} == 0)); then
		step "brokers already running; they stay up afterwards"
		return 0
	fi
	step "starting ${STARTED[*]} (stopped again at the end)"
	bash "$BROKERS" start
}

ensure_venv
ensure_install

# The launcher's readiness check asks Kafka for metadata through this venv's aiokafka.
export NERVE_PYTHON=$VENV/bin/python
export NERVE_KAFKA_BOOTSTRAP=127.0.0.1:${NERVE_KAFKA_PORT:-9092}
export NERVE_MQTT_HOST=127.0.0.1
export NERVE_MQTT_PORT=${NERVE_MQTT_PORT:-1883}

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
