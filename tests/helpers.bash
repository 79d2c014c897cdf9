# tests/helpers.bash - shared setup for the bats tests.
#
# Every test gets its own directory ($T) and, when it asks, its own broker
# on a private unix socket ($MQ_SOCK), killed in teardown.

bats_require_minimum_version 1.5.0

mq_setup() {
	T=$BATS_TEST_TMPDIR
	DATA=$T/data
	MQ_SOCK=$T/mq.sock
	BROKER_PID=
	export MQ_BROKER="unix:$MQ_SOCK"
}

mq_teardown() {
	local p
	# mq-recv sessions a test started with setsid (see crash).
	for p in ${RECV_PIDS:-}; do
		crash "$p"
	done
	if [ -n "${BROKER_PID:-}" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
		kill -KILL "$BROKER_PID" 2>/dev/null || true
		wait "$BROKER_PID" 2>/dev/null || true
	fi
}

# crash PID: SIGKILL for a `setsid mq-recv` and everything it started
# (its commands run in process groups of their own, in its session).
# pkill lists the session, then signals; a child forked in between
# escapes one round and would go on holding what it inherited (the
# group's lock files, until it execs), so repeat until none is left.
crash() {
	local i
	for i in $(seq 1 100); do
		pkill -KILL -s "$1" 2>/dev/null || break
		sleep 0.01
	done
	wait "$1" 2>/dev/null || true
}

# wait_for CMD... : retry CMD for up to 10 s.
wait_for() {
	local i
	for i in $(seq 1 200); do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

# start_broker [OPTIONS...]: start mq-brokerd on $DATA and $MQ_SOCK in the
# background (log in $T/broker.log) and wait until it is ready.
start_broker() {
	: > "$T/broker.log"
	mq-brokerd -d "$DATA" -l "unix:$MQ_SOCK" "$@" 2>> "$T/broker.log" &
	BROKER_PID=$!
	if ! wait_for grep -q ' ready: ' "$T/broker.log"; then
		echo "broker did not start:" >&2
		cat "$T/broker.log" >&2
		return 1
	fi
}

# stop_broker [SIGNAL]: stop it (TERM by default) and wait; sets
# BROKER_STATUS to its exit status.
stop_broker() {
	local sig=${1:-TERM}
	kill -"$sig" "$BROKER_PID"
	BROKER_STATUS=0
	wait "$BROKER_PID" || BROKER_STATUS=$?
	BROKER_PID=
}

# The programs' tests run twice: against a broker (MQ_TEST_STORE=broker,
# the default) and on a data directory with no broker (MQ_TEST_STORE=dir).
# start_store [BROKER OPTIONS...] sets up the chosen one and fills MQ with
# the option that selects it, so a test writes `mq-send "${MQ[@]}" ...`.
start_store() {
	if [ "${MQ_TEST_STORE:-broker}" = dir ]; then
		mkdir -p "$DATA"
		MQ=(-d "$DATA")
	else
		start_broker "$@"
		MQ=(-b "unix:$MQ_SOCK")
	fi
}

# Skip a test that only makes sense with a broker (or without one).
broker_only() {
	[ "${MQ_TEST_STORE:-broker}" = broker ] || skip "needs a broker"
}
dir_only() {
	[ "${MQ_TEST_STORE:-broker}" = dir ] || skip "needs a data directory"
}

# ---- shared by the program tests ----

# make_topic NAME N: a topic with N partitions in $DATA, made as
# mq-brokerd would make it (store.h), for tests without a broker.
make_topic() {
	local p
	mkdir -p "$DATA/topics/$1"
	printf 'mq-topic 1\npartitions %d\n' "$2" > "$DATA/topics/$1/meta"
	for p in $(seq 0 $(($2 - 1))); do mkdir -p "$DATA/topics/$1/$p"; done
}

# topic NAME N: make sure topic NAME will have N partitions. A broker
# started with --partitions N creates it so; without a broker, it is made
# here.
topic() {
	[ "${MQ_TEST_STORE:-broker}" = dir ] || return 0
	make_topic "$@"
}

# send TOPIC [MQ-SEND OPTIONS...]: stdin (or the messages given) to TOPIC,
# ids discarded.
send() {
	local topic=$1
	shift
	mq-send "${MQ[@]}" -t "$topic" "$@" > /dev/null
}

# lines_ge FILE N: FILE exists and has at least N lines.
lines_ge() { [ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ]; }

# jq_all FILTER: FILTER over every JSON line of stdin yields something,
# and only true (jq -e alone judges the last line only).
jq_all() {
	jq -n -e "[inputs | $1] | length > 0 and all" >/dev/null
}

# committed GROUP: "topic/partition=offset" words, "-" for none.
committed() {
	mq-offset "${MQ[@]}" groups -g "$1" -J 2>/dev/null |
		jq -r 'select(.topic) | "\(.topic)/\(.partition)=\(.current_offset // "-")"' |
		tr '\n' ' '
}
