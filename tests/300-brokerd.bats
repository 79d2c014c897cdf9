#!/usr/bin/env bats
# mq-brokerd as a process: options, lock, pidfile, signals, exit codes.
# (Protocol behaviour is tested in C: tests/unit/t_client.c, t_broker.c.)

load helpers

setup() { mq_setup; }
teardown() { mq_teardown; }

@test "mq-brokerd --help prints usage on stdout and exits 0" {
	run --separate-stderr -0 mq-brokerd --help
	[[ $output == *"usage: mq-brokerd"* ]]
	[[ $output == *"--flush"* ]]
	[ -z "$stderr" ]
}

@test "mq-brokerd --version prints the version" {
	run --separate-stderr -0 mq-brokerd --version
	[[ $output =~ ^mq-brokerd\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "unknown options and bad values are usage errors (64) naming the value" {
	run --separate-stderr -64 mq-brokerd --no-such-option
	[ -z "$output" ]
	run --separate-stderr -64 mq-brokerd --flush maybe
	[[ $stderr == *"--flush maybe"* ]]
	run --separate-stderr -64 mq-brokerd --partitions 0
	[[ $stderr == *"--partitions 0"* ]]
	run --separate-stderr -64 mq-brokerd --flush-spin -1
	[[ $stderr == *"--flush-spin -1"* ]]
	run --separate-stderr -64 mq-brokerd --preallocate 2G
	[[ $stderr == *"--preallocate 2G"* ]]
	run --separate-stderr -64 mq-brokerd --segment-bytes 12X
	[[ $stderr == *"12X"* ]]
	run --separate-stderr -64 mq-brokerd -d "$DATA" extra-argument
	[ ! -e "$DATA" ]
}

@test "starts on a fresh directory, creates the layout, stops cleanly on SIGTERM" {
	start_broker --pidfile "$T/pid"
	[ -d "$DATA/topics" ] && [ -d "$DATA/groups" ] && [ -f "$DATA/lock" ]
	[ "$(cat "$T/pid")" = "$BROKER_PID" ]
	[ -S "$MQ_SOCK" ]
	stop_broker TERM
	[ "$BROKER_STATUS" -eq 0 ]
	[ ! -e "$T/pid" ]
	grep -q ' stopped' "$T/broker.log"
}

# CPU ticks (user + system) the broker has used so far.
broker_ticks() {
	local stat
	read -r stat <"/proc/$BROKER_PID/stat"
	stat=${stat##*) }
	set -- $stat
	echo $((${12} + ${13}))
}

@test "--flush-spin polls only around flushes: an idle broker uses no CPU" {
	for spin in 0 20000; do
		start_broker --flush sync --flush-spin "$spin"
		seq 1 20 | mq-send -t spin -q
		before=$(broker_ticks)
		sleep 1
		after=$(broker_ticks)
		# Polling without a bound would use 100 ticks or more here.
		[ $((after - before)) -le 10 ]
		[ "$(mq-recv -t spin -n 20 | wc -l)" -eq 20 ]
		stop_broker TERM
		[ "$BROKER_STATUS" -eq 0 ]
		rm -rf "$DATA"
	done
}

@test "--preallocate: zeros after the last batch while running, none after a stop" {
	start_broker --flush sync --preallocate 64K --segment-bytes 16K
	seq -f 'line-%05g' 1 3000 | mq-send -t pre -q --async --batch-bytes 2K
	logs=("$DATA"/topics/pre/0/*.log)
	[ "${#logs[@]}" -gt 2 ]
	active=${logs[-1]}
	# The newest segment was grown with zeros up to the segment size.
	[ "$(stat -c %s "$active")" -eq 16384 ]
	[ "$(tail -c 61 "$active" | tr -d '\0' | wc -c)" -eq 0 ]
	kill -9 "$BROKER_PID"
	wait "$BROKER_PID" 2>/dev/null || true
	# After kill -9 the zeros are still there; recovery takes them for
	# the end of the log, says nothing of damage and cuts them.
	start_broker --flush sync --preallocate 0 --segment-bytes 16K
	[ "$(mq-recv -t pre -e | wc -l)" -eq 3000 ]
	[ "$(stat -c %s "$active")" -lt 16384 ]
	grep -q 'recovered pre/0: cut [0-9]* preallocated bytes' "$T/broker.log"
	! grep -q ' warn ' "$T/broker.log"
	[ "$(mq-recv -t pre -e | tail -n 1)" = line-03000 ]
	stop_broker TERM
	# Sealed segments never carry zeros; a clean stop cuts the newest's.
	for f in "$DATA"/topics/pre/0/*.log; do
		[ "$(tail -c 61 "$f" | tr -d '\0' | wc -c)" -gt 0 ]
	done
}

@test "SIGINT also stops it with status 0" {
	start_broker
	stop_broker INT
	[ "$BROKER_STATUS" -eq 0 ]
}

@test "a second broker on the same directory is refused, naming the holder's pid" {
	start_broker
	run --separate-stderr mq-brokerd -d "$DATA" -l "unix:$T/other.sock"
	[ "$status" -ne 0 ]
	[[ $stderr == *"pid $BROKER_PID"* ]]
	# The first one is unharmed.
	kill -0 "$BROKER_PID"
}

@test "the lock is released when the broker is killed with SIGKILL" {
	start_broker
	stop_broker KILL
	start_broker
	stop_broker TERM
	[ "$BROKER_STATUS" -eq 0 ]
}

@test "a data directory whose parent is missing is a clear error (74)" {
	run --separate-stderr -74 mq-brokerd -d "$T/no/such/dir" -l "unix:$MQ_SOCK"
	[[ $stderr == *"$T/no/such/dir"* ]]
}

@test "listening on TCP port 0 logs the port chosen, on loopback" {
	: > "$T/broker.log"
	mq-brokerd -d "$DATA" -l 127.0.0.1:0 2>> "$T/broker.log" &
	BROKER_PID=$!
	wait_for grep -q ' ready: ' "$T/broker.log"
	grep -Eq 'listening on 127\.0\.0\.1:[1-9][0-9]*$' "$T/broker.log"
}

@test "the default listen address is loopback only" {
	run -0 grep -q '127.0.0.1:7420' <(mq-brokerd --help)
}

@test "a busy unix socket path is not stolen from a live broker" {
	start_broker
	run --separate-stderr mq-brokerd -d "$T/data2" -l "unix:$MQ_SOCK"
	[ "$status" -ne 0 ]
	[[ $stderr == *"another process is listening"* ]]
	[ -S "$MQ_SOCK" ]
}
