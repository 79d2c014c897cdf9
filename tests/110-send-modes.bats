#!/usr/bin/env bats
# mq-send: sync, async and oneway; retries without duplicates when the
# connection drops or the broker restarts; failures; signals.

load helpers

setup() {
	mq_setup
	PROXY_PID=
	SEND_PID=
}

teardown() {
	if [ -n "$SEND_PID" ]; then
		kill -KILL "$SEND_PID" 2>/dev/null || true
	fi
	stop_proxy
	mq_teardown
}


# start_proxy: a socat relay in front of the broker at $T/proxy.sock,
# in a process group of its own so that it can be killed or stopped
# with its per-connection children.
start_proxy() {
	setsid socat UNIX-LISTEN:"$T/proxy.sock",fork,unlink-early \
		UNIX-CONNECT:"$MQ_SOCK" 2>> "$T/proxy.log" 8>&- &
	PROXY_PID=$!
	wait_for test -S "$T/proxy.sock"
}

stop_proxy() {
	if [ -n "${PROXY_PID:-}" ]; then
		kill -KILL -- -"$PROXY_PID" 2>/dev/null || true
		wait "$PROXY_PID" 2>/dev/null || true
		PROXY_PID=
	fi
}

# numbered N [FIRST]: N lines "m-000001"... (unique, greppable in the log)
numbered() {
	seq -f 'm-%06g' "${2:-1}" "$(( ${2:-1} + $1 - 1 ))"
}

# paced N: numbered N, 1000 lines every 20 ms, so that whatever happens
# meanwhile happens in the middle of the stream.
paced() {
	local i
	for ((i = 1; i <= $1; i += 1000)); do
		numbered 1000 "$i"
		sleep 0.02
	done
}

# logged TOPIC: the numbered messages in the log files of TOPIC, one per
# line, each partition in offset order.
logged() {
	local d
	for d in "$DATA"/topics/"$1"/*/; do
		cat "$d"*.log | grep -ao 'm-[0-9]\{6\}'
	done
}

# exactly_once TOPIC N: the log holds m-000001..m-N once each, and each
# partition holds them in increasing order.
exactly_once() {
	local d
	[ "$(logged "$1" | sort | uniq -d | head -3)" = "" ] ||
		{ echo "duplicates: $(logged "$1" | sort | uniq -d | head -3)"; return 1; }
	[ "$(logged "$1" | sort -u | wc -l)" -eq "$2" ] ||
		{ echo "$(logged "$1" | sort -u | wc -l) of $2 messages"; return 1; }
	for d in "$DATA"/topics/"$1"/*/; do
		cat "$d"*.log | grep -ao 'm-[0-9]\{6\}' | sort -c ||
			{ echo "out of order in $d"; return 1; }
	done
}

# send_from_fifo ARGS...: start mq-send in the background reading from
# the fifo $T/in, held open on fd 8 (bats owns fd 3), stdout in $T/out,
# stderr in $T/err; SEND_PID is its pid. Processes started later must not
# inherit fd 8, or mq-send never sees the end of its input: start them
# with 8>&-.
send_from_fifo() {
	mkfifo "$T/in"
	mq-send "$@" < "$T/in" > "$T/out" 2> "$T/err" &
	SEND_PID=$!
	exec 8> "$T/in"
}

# finish_send: close the fifo, wait for mq-send; SEND_STATUS is its status.
finish_send() {
	exec 8>&-
	SEND_STATUS=0
	wait "$SEND_PID" || SEND_STATUS=$?
	SEND_PID=
}

out_lines() {
	if [ -f "$T/out" ]; then wc -l < "$T/out"; else echo 0; fi
}

# out_has N: mq-send has printed at least N lines.
out_has() {
	[ "$(out_lines)" -ge "$1" ]
}

@test "sync: each message is answered, and its id printed, before the next is read" {
	start_store
	send_from_fifo "${MQ[@]}" -t t
	for i in 1 2 3; do
		echo "msg$i" >&8
		wait_for out_has "$i"
	done
	finish_send
	[ "$SEND_STATUS" -eq 0 ]
	[ "$(cat "$T/out")" = "$(printf 't/0/0\nt/0/1\nt/0/2')" ]
}

@test "async: a trickle (like tail -F) is sent within --linger, ids printed at once" {
	start_store
	send_from_fifo "${MQ[@]}" -t t --async --linger 20ms
	for i in 1 2 3; do
		echo "log line $i" >&8
		wait_for out_has "$i"
	done
	finish_send
	[ "$SEND_STATUS" -eq 0 ]
	[ "$(cat "$T/out")" = "$(printf 't/0/0\nt/0/1\nt/0/2')" ]
}

@test "async: ids come out in input order across partitions; per-partition order kept" {
	start_store --partitions 4
	topic t 4
	numbered 20000 | awk '{print "k" (NR % 13) ":" $0}' > "$T/input"
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t --async -K : \
		--batch-bytes 2K --linger 0 --inflight 7 < "$T/input"
	[ "${#lines[@]}" -eq 20000 ]
	# Line i of the output is the id of input line i: the same key always
	# shows the same partition, and within a partition the offsets grow
	# with the input.
	printf '%s\n' "${lines[@]}" > "$T/out"
	paste -d / <(cut -d: -f1 "$T/input") "$T/out" | awk -F/ '
		{ if (($1 in part) && part[$1] != $3) bad = "key " $1 " moved"
		  part[$1] = $3
		  if (($3 in last) && $4 <= last[$3]) bad = "offsets out of order at " NR
		  last[$3] = $4 }
		END { if (bad) { print bad; exit 1 } }'
	[ "$(cut -d/ -f2 "$T/out" | sort -u | wc -l)" -eq 4 ]
	exactly_once t 20000
}

@test "async: a large stream is acknowledged exactly once" {
	start_store --flush async
	numbered 300000 > "$T/input"
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t --async < "$T/input"
	[ "${#lines[@]}" -eq 300000 ]
	[ "${lines[0]}" = t/0/0 ] && [ "${lines[299999]}" = t/0/299999 ]
	exactly_once t 300000
}

@test "oneway: nothing is printed, every message arrives" {
	start_store --partitions 3
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t --oneway < <(numbered 5000)
	[ -z "$output" ] && [ -z "$stderr" ]
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t --oneway -K : < <(numbered 3000 5001 | sed 's/^/k:/')
	[ -z "$output" ]
	# The data is there once each, read in order behind the oneway sends.
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t -p 0 last
	exactly_once t 8000
}

@test "every reply is checked: failed batches give 75, the rest are delivered" {
	broker_only
	start_store
	# The topic does not exist: it gets one partition, so partition 2
	# is refused by the broker, batch by batch.
	input=$(for i in $(seq 1 30); do echo "{\"value\":\"m-$(printf %06d "$i")\",\"partition\":$((i % 3 == 0 ? 2 : 0))}"; done)
	for mode in --sync --async; do
		run --separate-stderr -75 mq-send "${MQ[@]}" -t "t${mode#--}" -J $mode <<< "$input"
		[ "${#lines[@]}" -eq 30 ]
		[ "$(printf '%s\n' "${lines[@]}" | jq -r .status | sort | uniq -c | tr -s ' ')" = \
		  "$(printf ' 10 failed\n 20 ok')" ]
		printf '%s\n' "${lines[@]}" | jq -e 'select(.status == "failed") |
			.error == "unknown-partition" and .line % 3 == 0' > /dev/null
		[[ $stderr == *"line 3: not acknowledged: unknown-partition"* ]]
		[[ $stderr == *"20 messages acknowledged, 10 failed"* ]]
		[ "$(logged "t${mode#--}" | wc -l)" -eq 20 ]
		[ "$(logged "t${mode#--}" | sort -u | wc -l)" -eq 20 ]
	done
}

@test "sync: a reply lost with the connection is retried without a duplicate" {
	broker_only
	start_store
	start_proxy
	send_from_fifo -b "unix:$T/proxy.sock" -t t -v --retries 10
	echo m-000001 >&8
	wait_for out_has 1
	# The broker gets m-000002 but its answer is lost with the proxy.
	kill -STOP "$BROKER_PID"
	echo m-000002 >&8
	sleep 0.3
	stop_proxy
	kill -CONT "$BROKER_PID"
	sleep 0.3
	start_proxy
	echo m-000003 >&8
	finish_send
	[ "$SEND_STATUS" -eq 0 ]
	[ "$(cat "$T/out")" = "$(printf 't/0/0\nt/0/1\nt/0/2')" ]
	grep -q 'reconnected' "$T/err"
	grep -q 'resent 1 batch; the broker already had 1' "$T/err"
	exactly_once t 3
}

@test "async: the connection dropped mid-stream, every message lands exactly once" {
	broker_only
	start_store --partitions 2
	start_proxy
	paced 200000 | awk '{print "k" (NR % 5) ":" $0}' |
		mq-send -b "unix:$T/proxy.sock" -t t --async -K : --batch-bytes 16K \
			-v --retries 20 > "$T/out" 2> "$T/err" &
	SEND_PID=$!
	for cut in 1 2 3; do
		wait_for out_has $((cut * 40000))
		stop_proxy
		sleep 0.1
		start_proxy
	done
	SEND_STATUS=0
	wait "$SEND_PID" || SEND_STATUS=$?
	SEND_PID=
	cat "$T/err"
	[ "$SEND_STATUS" -eq 0 ]
	[ "$(wc -l < "$T/out")" -eq 200000 ]
	[ "$(sort -u "$T/out" | wc -l)" -eq 200000 ]
	[ "$(grep -c 'reconnected' "$T/err")" -eq 3 ]
	exactly_once t 200000
}

@test "the broker restarted mid-stream: nothing lost, nothing doubled" {
	broker_only
	start_store --flush sync
	paced 100000 | mq-send "${MQ[@]}" -t t --async -v --retries 12 > "$T/out" 2> "$T/err" &
	SEND_PID=$!
	wait_for out_has 20000
	stop_broker KILL
	start_broker --flush sync 8>&-
	wait_for out_has 60000
	stop_broker TERM
	start_broker --flush sync 8>&-
	SEND_STATUS=0
	wait "$SEND_PID" || SEND_STATUS=$?
	SEND_PID=
	cat "$T/err"
	[ "$SEND_STATUS" -eq 0 ]
	[ "$(wc -l < "$T/out")" -eq 100000 ]
	[ "$(tail -1 "$T/out")" = t/0/99999 ]
	[ "$(grep -c 'reconnected' "$T/err")" -eq 2 ]
	exactly_once t 100000
}

@test "the broker killed mid-stream: exit 69, naming the lines not acknowledged" {
	broker_only
	start_store
	send_from_fifo "${MQ[@]}" -t t
	printf 'one\ntwo\n' >&8
	wait_for out_has 2
	stop_broker KILL
	printf 'three\nfour\n' >&8
	finish_send
	[ "$SEND_STATUS" -eq 69 ]
	[ "$(cat "$T/out")" = "$(printf 't/0/0\nt/0/1')" ]
	grep -q 'line 3: not acknowledged' "$T/err"
	grep -q 'stopped reading after line 3' "$T/err"

	# In async mode, whole ranges of lines.
	start_broker 8>&-
	numbered 300000 > "$T/input"
	mq-send "${MQ[@]}" -t a --async --batch-bytes 8K < "$T/input" > "$T/out" 2> "$T/err" &
	SEND_PID=$!
	wait_for out_has 1000
	stop_broker KILL
	SEND_STATUS=0
	wait "$SEND_PID" || SEND_STATUS=$?
	SEND_PID=
	[ "$SEND_STATUS" -eq 69 ]
	n=$(wc -l < "$T/out")
	[ "$n" -lt 300000 ]
	# The first line not acknowledged is reported (the ids are in order).
	grep -Eq "lines? $((n + 1))(-[0-9]+)?: not acknowledged" "$T/err"
}

@test "SIGTERM in async mode: stop reading, wait for the replies in flight" {
	broker_only
	start_store
	start_proxy
	send_from_fifo -b "unix:$T/proxy.sock" -t t --async
	printf 'a\nb\nc\n' >&8
	wait_for out_has 3
	# Replies held up in the (stopped) relay.
	kill -STOP -- -"$PROXY_PID"
	printf 'd\ne\n' >&8
	sleep 0.3
	kill -TERM "$SEND_PID"
	sleep 0.3
	kill -0 "$SEND_PID"
	printf 'never read\n' >&8
	kill -CONT -- -"$PROXY_PID"
	SEND_STATUS=0
	wait "$SEND_PID" || SEND_STATUS=$?
	SEND_PID=
	exec 8>&-
	[ "$SEND_STATUS" -eq 0 ]
	[ "$(cat "$T/out")" = "$(printf 't/0/0\nt/0/1\nt/0/2\nt/0/3\nt/0/4')" ]
	grep -q 'interrupted' "$T/err"
	[ "$(grep -ac 'never read' "$DATA"/topics/t/0/*.log)" -eq 0 ]
}

@test "SIGINT: lines already read are still sent; the rest stays unread" {
	start_store
	numbered 3000 > "$T/lines"
	send_from_fifo "${MQ[@]}" -t t
	# One write: mq-send reads far more than it has sent when the
	# signal comes.
	cat "$T/lines" >&8
	wait_for out_has 1
	kill -INT "$SEND_PID"
	sleep 0.5
	# mq-send may be done already: with no reader, the write raises
	# SIGPIPE, which must end a subshell, not the test.
	(printf 'after-the-signal\n' >&8) 2> /dev/null || true
	finish_send
	[ "$SEND_STATUS" -eq 0 ]
	local n
	n=$(wc -l < "$T/out")
	grep -q "interrupted: stopped reading after line $n;" "$T/err"
	# What it read is a whole number of lines, each sent once, in order.
	run -0 mq-recv "${MQ[@]}" -t t -e
	[ "$output" = "$(head -n "$n" "$T/lines")" ]
	[ "$n" -gt 1 ]
}

@test "async: waiting for replies at the --inflight limit costs no CPU" {
	broker_only
	start_store
	send_from_fifo -b "unix:$MQ_SOCK" -t t --async --batch-bytes 1K --inflight 2
	printf 'first\n' >&8
	wait_for out_has 1
	# The broker stops answering; more than --inflight batches queue up.
	kill -STOP "$BROKER_PID"
	numbered 2000 >&8
	sleep 0.5
	local a b
	a=$(awk '{ print $14 + $15 }' "/proc/$SEND_PID/stat")
	sleep 1.5
	b=$(awk '{ print $14 + $15 }' "/proc/$SEND_PID/stat")
	kill -CONT "$BROKER_PID"
	finish_send
	echo "# CPU while waiting: $((b - a)) ticks in 1.5 s" >&3
	# A loop that spins takes a whole core (about 150 ticks); waiting
	# takes next to none.
	[ "$((b - a))" -lt 30 ]
	[ "$SEND_STATUS" -eq 0 ]
	[ "$(wc -l < "$T/out")" -eq 2001 ]
}

@test "SIGTERM with replies that never come: 75 after --timeout, naming the lines" {
	broker_only
	start_store
	start_proxy
	send_from_fifo -b "unix:$T/proxy.sock" -t t --async --timeout 1s
	printf 'a\n' >&8
	wait_for out_has 1
	kill -STOP -- -"$PROXY_PID"
	printf 'b\nc\n' >&8
	sleep 0.3
	kill -TERM "$SEND_PID"
	SEND_STATUS=0
	wait "$SEND_PID" || SEND_STATUS=$?
	SEND_PID=
	exec 8>&-
	kill -CONT -- -"$PROXY_PID"
	[ "$SEND_STATUS" -eq 75 ]
	[ "$(cat "$T/out")" = t/0/0 ]
	grep -q 'lines 2-3: not acknowledged' "$T/err"
}

@test "a batch whose retries run out does not make the ones after it go twice" {
	broker_only
	# While $T/gate exists the broker's fdatasync stalls: each produce
	# is written to the log and never answered (tests/unit/
	# slow_fdatasync.c); other requests are answered as usual.
	LD_PRELOAD=$MQ_BUILD/tests/slow_fdatasync.so MQ_SLOW_FDATASYNC_GATE=$T/gate \
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
		start_store --flush sync --flush-timeout 1h
	mq-send "${MQ[@]}" -t t -q first
	touch "$T/gate"
	# x goes on the first connection, a on the second, where x runs out
	# of retries while a, written but unanswered, is still in doubt. a
	# must go again as it was (the broker knows it), not renumbered as a
	# new producer's (which the broker would append a second time).
	send_from_fifo "${MQ[@]}" -t t --async --batch-bytes 1 --linger 0 \
		--timeout 1s --retries 1
	printf 'x\n' >&8
	sleep 1.5
	printf 'a\n' >&8
	finish_send
	rm "$T/gate"
	[ "$SEND_STATUS" -eq 75 ]
	grep -q 'line 1: not acknowledged.*it may have been written' "$T/err"
	grep -q 'line 2: not acknowledged.*it may have been written' "$T/err"
	wait_for eval '[ "$(mq-recv "${MQ[@]}" -t t -e | wc -l)" -ge 3 ]'
	sleep 0.3
	run -0 mq-recv "${MQ[@]}" -t t -e
	echo "# topic: $(tr "\n" " " <<< "$output")" >&3
	[ "$output" = "$(printf 'first\nx\na')" ]
}

@test "a second SIGINT stops a reconnect that would wait out --timeout" {
	broker_only
	start_store
	start_proxy
	send_from_fifo -b "unix:$T/proxy.sock" -t t --timeout 20s
	printf 'a\n' >&8
	wait_for out_has 1
	# The relay goes, and in its place something accepts connections
	# and never answers: the reconnect waits for the broker's status.
	stop_proxy
	setsid socat UNIX-LISTEN:"$T/proxy.sock",fork,unlink-early \
		EXEC:"sleep 60" 2>> "$T/proxy.log" 8>&- &
	PROXY_PID=$!
	wait_for test -S "$T/proxy.sock"
	printf 'b\n' >&8
	sleep 1
	local t0=$SECONDS
	kill -INT "$SEND_PID"
	sleep 0.3
	kill -INT "$SEND_PID"
	finish_send
	echo "# stopped $((SECONDS - t0)) s after the signals" >&3
	[ "$((SECONDS - t0))" -lt 10 ]
	[ "$SEND_STATUS" -ne 0 ]
	grep -q 'line 2: not acknowledged' "$T/err"
}

@test "no reply within --timeout: the connection is given up (69) after retries" {
	broker_only
	start_store
	start_proxy
	send_from_fifo -b "unix:$T/proxy.sock" -t t --timeout 300ms --retries 1
	printf 'a\n' >&8
	wait_for out_has 1
	kill -STOP -- -"$PROXY_PID"
	printf 'b\n' >&8
	finish_send
	kill -CONT -- -"$PROXY_PID"
	[ "$SEND_STATUS" -eq 69 ]
	grep -q 'line 2: not acknowledged' "$T/err"
}
