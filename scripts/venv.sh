#!/usr/bin/env bash
# Shared set-up of the README commands, sourced by scripts/test.sh and scripts/replay.sh: the virtualenv
# (NERVE_VENV, default <repo>/.venv) with the project and its dev tools installed. Defines REPO and VENV.

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO
VENV=${NERVE_VENV:-$REPO/.venv}
cd "$REPO"

step() { printf '\n==> %s\n' "$*"; }
die() {
	printf 'test.sh: %s\n' "$*" >&2
	exit 1
}

find_python() { # prints the first python >= 3.11 on PATH
	local candidate
	for candidate in python3 python3.13 python3.12 python3.11; do
		if command -v "$candidate" >/dev/null &&
			"$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
			command -v "$candidate"
			return 0
		fi
	done
	return 1
}

ensure_venv() {
	local python
	[[ -x $VENV/bin/python ]] && return 0
	python=$(find_python) || die "Python 3.11 or newer is needed (python3 on PATH is older or missing)"
	step "creating $VENV with $python"
	if ! "$python" -m venv "$VENV"; then
		# Debian splits ensurepip into python3-venv; a fresh machine often lacks it.
		command -v apt-get >/dev/null || die "'$python -m venv' failed; install the venv module for $python"
		rm -rf "$VENV"
		if [[ $EUID -eq 0 ]]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; else
			sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv >/dev/null
		fi
		"$python" -m venv "$VENV"
	fi
}

ensure_install() {
	local stamp
	# Reinstall only when pyproject.toml changed: the editable install picks up code changes by itself.
	stamp=$(cksum <pyproject.toml)
	if [[ -f $VENV/.nerve-installed && $(<"$VENV/.nerve-installed") == "$stamp" ]]; then return 0; fi
	step "installing the project and its dev tools into $VENV"
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	printf '%s\n' "$stamp" >"$VENV/.nerve-installed"
}

