#!/usr/bin/env bash
# The README's demo command until `nerve demo` exists: on a fresh machine, set up the virtualenv, check and
# test the example city rules, then replay a recorded stretch of the city through the edge tier and the
# brain tier. No broker is needed: `nerve replay` is the engine alone, in event time.
set -euo pipefail

# shellcheck source=scripts/venv.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/venv.sh"

ensure_venv
ensure_install

CITY=$REPO/examples/city
nerve=$VENV/bin/nerve
step "nerve rules check examples/city"
"$nerve" rules check "$CITY"
step "nerve rules test examples/city"
"$nerve" rules test --quiet "$CITY"
for tier in edge brain; do
	step "nerve replay --tier $tier --format text"
	"$nerve" replay --rules "$CITY" --events "$CITY/events.jsonl" --tier "$tier" --until 1767227400 --format text
done
