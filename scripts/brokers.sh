#!/usr/bin/env bash
# Local Kafka (single-node KRaft, run from Maven jars) and Mosquitto for development and tests.
#
#   scripts/brokers.sh start|stop|status [kafka|mqtt] [--secure]     (no broker named: both)
#
# --secure (or NERVE_SECURE=1) runs the secured pair instead, on their own ports and data dirs, beside the
# plain ones: Kafka with SASL_SSL (SCRAM-SHA-512) and ACLs, Mosquitto with TLS, passwords and ACLs. Its
# certificates, passwords and ACL files come from `nerve secure init` (run here when missing, from the
# inventory NERVE_INVENTORY, default examples/secure/inventory.yaml, into NERVE_SECURE_DIR, default
# $NERVE_VAR/secure); users, topics and ACLs are provisioned in Kafka after every start (idempotent).
# The secured mode needs NERVE_PYTHON (or <repo>/.venv) with the project installed.
#
# Environment:
#   NERVE_KAFKA_PORT (9092), NERVE_KAFKA_CONTROLLER_PORT (9093), NERVE_MQTT_PORT (1883)
#   secured: NERVE_SECURE_KAFKA_PORT (29092), NERVE_SECURE_KAFKA_CONTROLLER_PORT (29093),
#            NERVE_SECURE_MQTT_PORT (28883), NERVE_SECURE_DIR, NERVE_INVENTORY
#   NERVE_VAR     state root; configs, data, logs and pid files go to $NERVE_VAR/brokers (default <repo>/var)
#   NERVE_CACHE   where the Kafka jars are cached (default ~/.cache/nerve)
#   NERVE_PYTHON  a python that can import aiokafka, for the Kafka readiness check
#                 (default <repo>/.venv/bin/python if it can; otherwise a JVM-based check is used)
#   NERVE_BROKER_TIMEOUT  seconds to wait for a broker to answer (90)
#
# Exit codes: 0 done; 1 failure; 2 usage; 3 `status`: a broker is down.

# The inner `bash -c '...'` scripts take their values as arguments, so single quotes are meant (SC2016).
# shellcheck disable=SC2016
set -euo pipefail

readonly KAFKA_VERSION=3.9.1 # keep in step with docker/kafka/pom.xml
readonly HOST=127.0.0.1
REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO

absolute() { if [[ $1 == /* ]]; then printf '%s' "$1"; else printf '%s/%s' "$PWD" "$1"; fi; }

SECURE=${NERVE_SECURE:-}
ARGS=()
for arg in "$@"; do
	if [[ $arg == --secure ]]; then SECURE=1; else ARGS+=("$arg"); fi
done
[[ $SECURE == 0 ]] && SECURE=""

CACHE=$(absolute "${NERVE_CACHE:-$HOME/.cache/nerve}")
VAR=$(absolute "${NERVE_VAR:-$REPO/var}")
TIMEOUT=${NERVE_BROKER_TIMEOUT:-90}
KAFKA_HOME=$CACHE/kafka-$KAFKA_VERSION # libs/ and the .complete marker

if [[ -n $SECURE ]]; then
	KAFKA_PORT=${NERVE_SECURE_KAFKA_PORT:-29092}
	CONTROLLER_PORT=${NERVE_SECURE_KAFKA_CONTROLLER_PORT:-29093}
	MQTT_PORT=${NERVE_SECURE_MQTT_PORT:-28883}
	BROKERS_DIR=$VAR/brokers-secure
	SECURE_DIR=$(absolute "${NERVE_SECURE_DIR:-$VAR/secure}")
	INVENTORY=$(absolute "${NERVE_INVENTORY:-$REPO/examples/secure/inventory.yaml}")
	# Rendered configs hold the broker's password: everything this launcher writes is private.
	umask 077
else
	KAFKA_PORT=${NERVE_KAFKA_PORT:-9092}
	CONTROLLER_PORT=${NERVE_KAFKA_CONTROLLER_PORT:-9093}
	MQTT_PORT=${NERVE_MQTT_PORT:-1883}
	BROKERS_DIR=$VAR/brokers
fi
KAFKA_DIR=$BROKERS_DIR/kafka    # rendered configs, cluster-id, data/, kafka.log, kafka.pid
MQTT_DIR=$BROKERS_DIR/mosquitto # rendered config, data/, mosquitto.log, mosquitto.out, mosquitto.pid

log() { printf '%s\n' "$*"; }
die() {
	printf 'brokers.sh: %s\n' "$*" >&2
	exit 1
}
usage() {
	printf 'usage: %s start|stop|status [kafka|mqtt] [--secure]\n' "$0" >&2
	exit 2
}

for port in "$KAFKA_PORT" "$CONTROLLER_PORT" "$MQTT_PORT" "$TIMEOUT"; do
	[[ $port =~ ^[0-9]+$ ]] || die "not a number: '$port' (check the NERVE_* port and timeout variables)"
done

# --- small tools -------------------------------------------------------------------------------------

now() {
	# EPOCHREALTIME (bash 5) has microseconds; some locales print it with a decimal comma.
	if [[ -n ${EPOCHREALTIME:-} ]]; then printf '%s' "${EPOCHREALTIME/,/.}"; else date +%s; fi
}
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

port_open() { # port_open PORT: something accepts TCP connections on HOST:PORT
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

mqtt_answers() { # mqtt_answers PORT: an MQTT 3.1.1 CONNECT gets a CONNACK "accepted"
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/$0/$1"
		printf "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00" >&3
		reply=$(head -c 4 <&3 | od -An -tx1 | tr -d " \n")
		printf "\xe0\x00" >&3
		[[ $reply == 20020000 ]]
	' "$HOST" "$1" 2>/dev/null
}

mqtt_tls_answers() { # mqtt_tls_answers PORT: the TLS listener completes a handshake with a certificate of our CA
	timeout 5 openssl s_client -connect "$HOST:$1" -CAfile "$SECURE_DIR/ca/ca.pem" -verify_return_error \
		-verify_ip "$HOST" </dev/null >/dev/null 2>&1
}

port_holder() { # best effort: which process listens on PORT, for error messages
	local who
	who=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n 1) || true
	[[ -n $who ]] && printf ' (%s)' "$who"
	return 0
}

require_free_port() { # require_free_port PORT WHAT VARIABLE
	if port_open "$1"; then
		die "port $1 ($2) on $HOST is taken by a process this launcher did not start$(port_holder "$1"); stop it, or pick another port with $3=..."
	fi
}

cmdline_of() { # the command line of PID, empty for a dead or zombie process
	if [[ -r /proc/$1/cmdline ]]; then tr '\0' ' ' <"/proc/$1/cmdline"; else ps -o args= -p "$1" 2>/dev/null || true; fi
}

pid_of() { # pid_of PIDFILE MARK: prints the pid from PIDFILE if that process lives and its command line has MARK
	local pid
	[[ -s $1 ]] || return 1
	pid=$(<"$1")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	# The mark (our config path) guards against a recycled pid that now belongs to someone else.
	[[ $(cmdline_of "$pid") == *"$2"* ]] || return 1
	printf '%s' "$pid"
}

as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "root is needed to run: $*"
	fi
}

apt_install() { # apt_install PACKAGE...
	command -v apt-get >/dev/null || die "$* is missing and apt-get is not available: install it yourself"
	log "installing $* with apt-get"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_command() { # ensure_command COMMAND APT_PACKAGE
	command -v "$1" >/dev/null || apt_install "$2"
	command -v "$1" >/dev/null || die "$1 is still not on PATH after installing $2"
}

render() { # render TEMPLATE OUTPUT NAME=VALUE...: replaces each @NAME@ in TEMPLATE
	local template=$1 output=$2 text pair
	shift 2
	text=$(<"$template")
	for pair in "$@"; do
		# Quoted pattern and replacement: paths may hold characters that are special to ${//} (& in bash 5.2).
		text=${text//"@${pair%%=*}@"/"${pair#*=}"}
	done
	if [[ $text =~ @[A-Z_]+@ ]]; then die "$template: no value for ${BASH_REMATCH[0]}"; fi
	printf '# Rendered by scripts/brokers.sh from %s: edit the template, not this file.\n%s\n' \
		"${template#"$REPO"/}" "$text" >"$output.tmp"
	mv "$output.tmp" "$output"
}

launch() { # launch PIDFILE LOGFILE COMMAND...: runs COMMAND in the background, in its own session
	local pidfile=$1 logfile=$2 deadline
	shift 2
	rm -f "$pidfile"
	# Its own session keeps the broker alive when the terminal that started it closes; the child writes
	# its own pid before exec, so the pid file names the broker and not a wrapper.
	if command -v setsid >/dev/null; then
		setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >>"$logfile" 2>&1 </dev/null &
	else
		nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >>"$logfile" 2>&1 </dev/null &
	fi
	deadline=$((SECONDS + 10))
	until [[ -s $pidfile ]]; do
		((SECONDS < deadline)) || die "could not launch $1 (no pid file $pidfile)"
		sleep 0.05
	done
}

fail_start() { # fail_start NAME PIDFILE LOGFILE REASON: stops what we launched and shows the log
	printf 'brokers.sh: %s: %s; last lines of %s:\n' "$1" "$4" "$3" >&2
	tail -n 40 "$3" >&2 || true
	terminate "$1" "$2" "${5:-}" >/dev/null || true
	exit 1
}

terminate() { # terminate NAME PIDFILE MARK: TERM, wait, then KILL; only a pid from our own pid file
	local name=$1 pidfile=$2 mark=$3 pid t0 deadline
	if ! pid=$(pid_of "$pidfile" "$mark"); then
		rm -f "$pidfile"
		return 1
	fi
	t0=$(now)
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + 30))
	while pid_of "$pidfile" "$mark" >/dev/null; do
		if ((SECONDS >= deadline)); then
			log "$name (pid $pid) did not stop within 30s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.5
			break
		fi
		sleep 0.1
	done
	rm -f "$pidfile"
	log "$name stopped (pid $pid) in $(seconds_since "$t0")s"
}

# --- kafka -------------------------------------------------------------------------------------------

KAFKA_MARK=$KAFKA_DIR/server.properties
KAFKA_PIDFILE=$KAFKA_DIR/kafka.pid
KAFKA_LOG=$KAFKA_DIR/kafka.log

ensure_kafka_jars() {
	local pom=$REPO/docker/kafka/pom.xml stamp t0
	# The marker holds the pom's checksum: a changed pom resolves again, an interrupted copy never counts.
	stamp=$(cksum <"$pom")
	if [[ -f $KAFKA_HOME/.complete && $(<"$KAFKA_HOME/.complete") == "$stamp" ]]; then return 0; fi
	ensure_command mvn maven
	log "resolving Kafka $KAFKA_VERSION jars into $KAFKA_HOME/libs (first start only)"
	t0=$(now)
	mkdir -p "$KAFKA_HOME"
	rm -rf "$KAFKA_HOME/libs.partial" "$KAFKA_HOME/.complete"
	if ! mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory="$KAFKA_HOME/libs.partial" >"$KAFKA_HOME/maven.log" 2>&1; then
		tail -n 40 "$KAFKA_HOME/maven.log" >&2
		die "maven could not resolve the Kafka jars; full output in $KAFKA_HOME/maven.log"
	fi
	[[ -f $KAFKA_HOME/libs.partial/kafka_2.13-$KAFKA_VERSION.jar ]] ||
		die "maven finished but kafka_2.13-$KAFKA_VERSION.jar is not in $KAFKA_HOME/libs.partial"
	rm -rf "$KAFKA_HOME/libs"
	mv "$KAFKA_HOME/libs.partial" "$KAFKA_HOME/libs"
	printf '%s\n' "$stamp" >"$KAFKA_HOME/.complete"
	log "kafka jars resolved in $(seconds_since "$t0")s"
}

kafka_java() { # kafka_java ARGS...: java with the cached jars and the quiet log4j config
	java -cp "$KAFKA_HOME/libs/*" -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" "$@"
}

prepare_kafka() {
	local cluster_id
	local -a scram=()
	mkdir -p "$KAFKA_DIR/data"
	if [[ -n $SECURE ]]; then
		render "$REPO/docker/kafka/server.secure.properties" "$KAFKA_DIR/server.properties" \
			"KAFKA_PORT=$KAFKA_PORT" "CONTROLLER_PORT=$CONTROLLER_PORT" "DATA_DIR=$KAFKA_DIR/data" \
			"SECURE_DIR=$SECURE_DIR" "BROKER_PASSWORD=$(head -n 1 "$SECURE_DIR/passwords/kafka-broker")"
		# The broker's and the admin's SCRAM users come with the first metadata; the admin adds the rest.
		scram=(--add-scram "SCRAM-SHA-512=[name=kafka-broker,password=$(head -n 1 "$SECURE_DIR/passwords/kafka-broker")]"
			--add-scram "SCRAM-SHA-512=[name=nerve-admin,password=$(head -n 1 "$SECURE_DIR/passwords/nerve-admin")]")
	else
		render "$REPO/docker/kafka/server.properties" "$KAFKA_DIR/server.properties" \
			"KAFKA_PORT=$KAFKA_PORT" "CONTROLLER_PORT=$CONTROLLER_PORT" "DATA_DIR=$KAFKA_DIR/data"
	fi
	render "$REPO/docker/kafka/log4j.properties" "$KAFKA_DIR/log4j.properties"
	# One cluster id per data dir, kept beside it: a data dir formatted for one id refuses any other.
	if [[ ! -s $KAFKA_DIR/cluster-id ]]; then
		cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOG" | tail -n 1)
		[[ $cluster_id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "StorageTool random-uuid printed '$cluster_id'; see $KAFKA_LOG"
		printf '%s\n' "$cluster_id" >"$KAFKA_DIR/cluster-id"
	fi
	# Formatting costs a JVM start; a formatted data dir has meta.properties and needs none.
	if [[ ! -f $KAFKA_DIR/data/meta.properties ]]; then
		kafka_java kafka.tools.StorageTool format -t "$(<"$KAFKA_DIR/cluster-id")" \
			-c "$KAFKA_DIR/server.properties" --ignore-formatted "${scram[@]}" >>"$KAFKA_LOG" 2>&1 ||
			die "formatting the KRaft storage in $KAFKA_DIR/data failed; see $KAFKA_LOG"
	fi
}

PYTHON_CHECKED=""
PYTHON_FOR_CHECK=""
python_with_aiokafka() { # prints a python that can import aiokafka, or fails
	if [[ -z $PYTHON_CHECKED ]]; then
		PYTHON_CHECKED=yes
		local candidate
		for candidate in "${NERVE_PYTHON:-}" "$REPO/.venv/bin/python"; do
			if [[ -n $candidate ]] && "$candidate" -c 'import aiokafka' 2>/dev/null; then
				PYTHON_FOR_CHECK=$candidate
				break
			fi
		done
	fi
	[[ -n $PYTHON_FOR_CHECK ]] && printf '%s' "$PYTHON_FOR_CHECK"
}

kafka_metadata_ok() { # the broker answers a metadata request and lists itself as an alive broker
	local python
	# The listener accepts connections before the broker has caught up with its controller; only a
	# metadata answer that names an (unfenced) broker means clients can work.
	if python=$(python_with_aiokafka); then
		timeout 15 "$python" - "$HOST:$KAFKA_PORT" "${SECURE:+$SECURE_DIR}" >/dev/null 2>&1 <<'PY'
import asyncio
import sys

from aiokafka import AIOKafkaClient
from aiokafka.helpers import create_ssl_context


def security() -> dict[str, object]:
    if not sys.argv[2]:
        return {}
    with open(f"{sys.argv[2]}/passwords/nerve-admin") as f:
        password = f.readline().rstrip("\n")
    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": create_ssl_context(cafile=f"{sys.argv[2]}/ca/ca.pem"),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "nerve-admin",
        "sasl_plain_password": password,
    }


async def main() -> None:
    client = AIOKafkaClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000, **security())
    try:
        await client.bootstrap()
        if not client.cluster.brokers():
            raise SystemExit(1)
    finally:
        await client.close()


asyncio.run(main())
PY
	else
		[[ -z $SECURE ]] || die "the secured mode needs a python with the project installed (NERVE_PYTHON or $REPO/.venv)"
		timeout 30 java -cp "$KAFKA_HOME/libs/*" -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
			kafka.admin.BrokerApiVersionsCommand --bootstrap-server "$HOST:$KAFKA_PORT" 2>/dev/null |
			grep -q '(id: 1 '
	fi
}

KAFKA_STARTED_AT=""
launch_kafka() { # starts Kafka unless it runs; sets KAFKA_STARTED_AT when there is something to wait for
	local pid
	if pid=$(pid_of "$KAFKA_PIDFILE" "$KAFKA_MARK"); then
		if port_open "$KAFKA_PORT"; then
			log "kafka already running (pid $pid) on $HOST:$KAFKA_PORT"
			return 0
		fi
		log "kafka (pid $pid) is starting; waiting for it"
		KAFKA_STARTED_AT=$(now)
		return 0
	fi
	rm -f "$KAFKA_PIDFILE"
	require_free_port "$KAFKA_PORT" "kafka" NERVE_KAFKA_PORT
	require_free_port "$CONTROLLER_PORT" "kafka controller" NERVE_KAFKA_CONTROLLER_PORT
	ensure_command java default-jre-headless
	ensure_kafka_jars
	# Ready time counts from here: config, first-time storage format, JVM start, metadata answer.
	KAFKA_STARTED_AT=$(now)
	prepare_kafka
	launch "$KAFKA_PIDFILE" "$KAFKA_LOG" \
		java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
		-Djava.awt.headless=true -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
		-cp "$KAFKA_HOME/libs/*" kafka.Kafka "$KAFKA_DIR/server.properties"
}

wait_kafka() {
	local deadline=$((SECONDS + TIMEOUT))
	[[ -n $KAFKA_STARTED_AT ]] || return 0
	until port_open "$KAFKA_PORT" && kafka_metadata_ok; do
		pid_of "$KAFKA_PIDFILE" "$KAFKA_MARK" >/dev/null ||
			fail_start kafka "$KAFKA_PIDFILE" "$KAFKA_LOG" "the broker process exited during start-up" "$KAFKA_MARK"
		((SECONDS < deadline)) ||
			fail_start kafka "$KAFKA_PIDFILE" "$KAFKA_LOG" "no metadata answer on $HOST:$KAFKA_PORT within ${TIMEOUT}s" "$KAFKA_MARK"
		sleep 0.3
	done
	log "kafka ready on $HOST:$KAFKA_PORT in $(seconds_since "$KAFKA_STARTED_AT")s (pid $(<"$KAFKA_PIDFILE"), log $KAFKA_LOG)"
}

# --- mosquitto ---------------------------------------------------------------------------------------

MQTT_MARK=$MQTT_DIR/mosquitto.conf
MQTT_PIDFILE=$MQTT_DIR/mosquitto.pid
MQTT_LOG=$MQTT_DIR/mosquitto.log
MQTT_OUT=$MQTT_DIR/mosquitto.out # what mosquitto prints before its own log file is open

find_mosquitto() {
	local candidate
	if command -v mosquitto 2>/dev/null; then return 0; fi
	# /usr/sbin is often not on a normal user's PATH.
	for candidate in /usr/sbin/mosquitto /usr/local/sbin/mosquitto /opt/homebrew/sbin/mosquitto; do
		if [[ -x $candidate ]]; then
			printf '%s\n' "$candidate"
			return 0
		fi
	done
	return 1
}

ensure_mosquitto() { # prints the mosquitto binary, installing it with apt-get when missing
	local binary
	if binary=$(find_mosquitto); then
		printf '%s' "$binary"
		return 0
	fi
	apt_install mosquitto >&2
	# Debian starts the packaged service on 1883 at install; this launcher runs its own broker instead.
	if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
		as_root systemctl disable --now mosquitto >&2 || true
		log "stopped and disabled the system mosquitto service that apt-get started" >&2
	elif [[ -x /etc/init.d/mosquitto ]] && /etc/init.d/mosquitto status >/dev/null 2>&1; then
		as_root /etc/init.d/mosquitto stop >&2 || true
		as_root update-rc.d mosquitto disable >/dev/null 2>&1 || true
		log "stopped and disabled the system mosquitto service that apt-get started" >&2
	fi
	binary=$(find_mosquitto) || die "mosquitto is still missing after apt-get install mosquitto"
	printf '%s' "$binary"
}

MQTT_STARTED_AT=""
launch_mqtt() {
	local pid binary
	if pid=$(pid_of "$MQTT_PIDFILE" "$MQTT_MARK"); then
		if port_open "$MQTT_PORT"; then
			log "mqtt already running (mosquitto pid $pid) on $HOST:$MQTT_PORT"
			return 0
		fi
		log "mqtt (mosquitto pid $pid) is starting; waiting for it"
		MQTT_STARTED_AT=$(now)
		return 0
	fi
	rm -f "$MQTT_PIDFILE"
	require_free_port "$MQTT_PORT" "mqtt" NERVE_MQTT_PORT
	binary=$(ensure_mosquitto)
	mkdir -p "$MQTT_DIR/data"
	if [[ -n $SECURE ]]; then
		render "$REPO/docker/mosquitto/mosquitto.secure.conf" "$MQTT_DIR/mosquitto.conf" \
			"MQTT_PORT=$MQTT_PORT" "DATA_DIR=$MQTT_DIR/data" "LOG_FILE=$MQTT_LOG" "RUN_USER=$(id -un)" \
			"SECURE_DIR=$SECURE_DIR"
	else
		render "$REPO/docker/mosquitto/mosquitto.conf" "$MQTT_DIR/mosquitto.conf" \
			"MQTT_PORT=$MQTT_PORT" "DATA_DIR=$MQTT_DIR/data" "LOG_FILE=$MQTT_LOG" "RUN_USER=$(id -un)"
	fi
	MQTT_STARTED_AT=$(now)
	launch "$MQTT_PIDFILE" "$MQTT_OUT" "$binary" -c "$MQTT_DIR/mosquitto.conf"
}

wait_mqtt() {
	local deadline=$((SECONDS + TIMEOUT))
	[[ -n $MQTT_STARTED_AT ]] || return 0
	until if [[ -n $SECURE ]]; then mqtt_tls_answers "$MQTT_PORT"; else mqtt_answers "$MQTT_PORT"; fi; do
		pid_of "$MQTT_PIDFILE" "$MQTT_MARK" >/dev/null ||
			fail_start mqtt "$MQTT_PIDFILE" "$MQTT_OUT" "mosquitto exited during start-up (its log: $MQTT_LOG)" "$MQTT_MARK"
		((SECONDS < deadline)) ||
			fail_start mqtt "$MQTT_PIDFILE" "$MQTT_LOG" "no CONNACK on $HOST:$MQTT_PORT within ${TIMEOUT}s" "$MQTT_MARK"
		sleep 0.1
	done
	log "mqtt ready on $HOST:$MQTT_PORT in $(seconds_since "$MQTT_STARTED_AT")s (mosquitto pid $(<"$MQTT_PIDFILE"), log $MQTT_LOG)"
}

# --- secured mode ------------------------------------------------------------------------------------

nerve_python() { # prints a python that has the project (nerve_cli.lockdown) installed, or dies
	local candidate
	for candidate in "${NERVE_PYTHON:-}" "$REPO/.venv/bin/python"; do
		if [[ -n $candidate ]] && "$candidate" -c 'import nerve_cli.lockdown.city' 2>/dev/null; then
			printf '%s' "$candidate"
			return 0
		fi
	done
	die "the secured mode needs a python with the project installed: set NERVE_PYTHON or create $REPO/.venv (scripts/test.sh does)"
}

secure_init() { # the certificates, passwords and Mosquitto files (idempotent: keeps what exists)
	local python
	python=$(nerve_python)
	ensure_mosquitto >/dev/null # mosquitto_passwd hashes the password file
	(cd "$REPO" && "$python" -m nerve_cli secure init --inventory "$INVENTORY" --dir "$SECURE_DIR") >/dev/null ||
		die "nerve secure init --inventory $INVENTORY --dir $SECURE_DIR failed"
}

secure_provision() { # the Kafka users, topics and ACLs of the inventory (idempotent)
	local python
	python=$(nerve_python)
	(cd "$REPO" && "$python" -m nerve_cli secure provision --inventory "$INVENTORY" --dir "$SECURE_DIR" \
		--bootstrap "$HOST:$KAFKA_PORT") || die "provisioning users, topics and ACLs in Kafka failed"
}

# --- commands ----------------------------------------------------------------------------------------

status_one() { # status_one NAME PIDFILE MARK PORT: prints a line; succeeds when up
	local name=$1 pidfile=$2 mark=$3 port=$4 pid
	if pid=$(pid_of "$pidfile" "$mark") && port_open "$port"; then
		printf '%-6s up    pid %-8s %s:%s\n' "$name" "$pid" "$HOST" "$port"
		return 0
	fi
	if [[ -n ${pid:-} ]]; then
		printf '%-6s down  pid %s lives but %s:%s does not answer (starting, or hung?)\n' "$name" "$pid" "$HOST" "$port"
	elif port_open "$port"; then
		printf '%-6s down  %s:%s answers, but not a broker this launcher started%s\n' "$name" "$HOST" "$port" "$(port_holder "$port")"
	else
		printf '%-6s down\n' "$name"
	fi
	return 1
}

mqtt_db_note() { # a large persistence file slows every delivery: Mosquitto writes it whole at each autosave
	local db=$MQTT_DIR/data/mosquitto.db size
	[[ -f $db ]] || return 0
	size=$(stat -c %s "$db")
	if ((size > 1000000)); then
		printf '       persistence file %s is %s MB: Mosquitto writes it whole every 2 s and delivers nothing meanwhile (sessions left with queued messages; stop the broker and delete it to start clean)\n' \
			"$db" "$((size / 1000000))"
	fi
}

stop_one() { # stop_one NAME PIDFILE MARK PORT
	if ! terminate "$1" "$2" "$3"; then
		if port_open "$4"; then
			log "$1 not started by this launcher; $HOST:$4 is served by another process$(port_holder "$4"), left alone"
		else
			log "$1 not running"
		fi
	fi
}

main() {
	local command=${1:-} which=${2:-all} rc=0
	[[ $# -le 2 ]] || usage
	case $which in
	kafka | mqtt | all) ;;
	mosquitto) which=mqtt ;;
	*) usage ;;
	esac
	case $command in
	start)
		mkdir -p "$KAFKA_DIR" "$MQTT_DIR"
		if [[ -n $SECURE ]]; then secure_init; fi
		# Launch both, then wait: Kafka's JVM start overlaps with Mosquitto's.
		if [[ $which != mqtt ]]; then launch_kafka; fi
		if [[ $which != kafka ]]; then launch_mqtt; fi
		if [[ $which != kafka ]]; then wait_mqtt; fi
		if [[ $which != mqtt ]]; then wait_kafka; fi
		if [[ -n $SECURE && $which != mqtt && -n $KAFKA_STARTED_AT ]]; then secure_provision; fi
		;;
	stop)
		if [[ $which != kafka ]]; then stop_one mqtt "$MQTT_PIDFILE" "$MQTT_MARK" "$MQTT_PORT"; fi
		if [[ $which != mqtt ]]; then stop_one kafka "$KAFKA_PIDFILE" "$KAFKA_MARK" "$KAFKA_PORT"; fi
		;;
	status)
		if [[ $which != mqtt ]]; then status_one kafka "$KAFKA_PIDFILE" "$KAFKA_MARK" "$KAFKA_PORT" || rc=3; fi
		if [[ $which != kafka ]]; then
			status_one mqtt "$MQTT_PIDFILE" "$MQTT_MARK" "$MQTT_PORT" || rc=3
			mqtt_db_note
		fi
		return "$rc"
		;;
	*) usage ;;
	esac
}

main "${ARGS[@]}"
