#!/usr/bin/env bash
# The README's first command, also on a fresh machine: the virtualenv, then `nerve demo` — which starts the
# local Kafka and Mosquitto (scripts/brokers.sh) when they are not running, and stops what it started.
#
#   scripts/demo.sh [NERVE DEMO ARGS...]      (what `make demo` runs; e.g. --quick)
set -euo pipefail

# shellcheck source=scripts/venv.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/venv.sh"

ensure_venv
ensure_install
export NERVE_PYTHON=$VENV/bin/python  # the launcher's readiness check uses this venv's aiokafka
step "nerve demo $*"
exec "$VENV/bin/nerve" demo "$@"
