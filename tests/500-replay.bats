#!/usr/bin/env bats
# mq-replay: listing, showing, replaying and purging dead letters, and
# replaying each exactly once across kill -9. Dead letters are made the
# way they are in real life: mq-recv --exec with a command that fails.

load helpers

setup() {
	mq_setup
	REPLAY_PID= SLEEPER=
}

teardown() {
	local p
	for p in ${REPLAY_PID:-} ${SLEEPER:-}; do
		kill -KILL "$p" 2>/dev/null || true
	done
	if [ -n "${BROKER_PID:-}" ]; then
		kill -CONT "$BROKER_PID" 2>/dev/null || true
	fi
	mq_teardown
}

# The command of group billing: it fails on values without "ok".
FAIL='grep -q ok || { echo "no ok in message" >&2; echo "details follow" >&2; exit 3; }'
G=(--session-timeout 2000)

# send_keyed TOPIC [MQ-SEND OPTIONS...]: "key value" lines from stdin.
send_keyed() {
	local topic=$1
	shift
	mq-send "${MQ[@]}" -t "$topic" -K ' ' -q "$@"
}

# consume TOPIC GROUP CMD: run CMD on every message of TOPIC the group
# has not processed, one retry each, then stop at the end.
consume() {
	mq-recv "${MQ[@]}" -t "$1" -g "$2" "${G[@]}" --from-new beginning -e -q \
		--retries 1 --backoff 10ms --exec "$3" 2>> "$T/recv.err"
}

# dead N: N dead letters for group billing, from topic orders, keys
# k1..kN and values bad1..badN (ok messages in between are processed).
dead() {
	local i
	for ((i = 1; i <= $1; i++)); do
		echo "k$i bad$i"
		echo "ok$i ok$i"
	done | send_keyed orders
	consume orders billing "$FAIL"
}

# dlq_count GROUP: how many records its dead-letter queue holds.
dlq_count() {
	mq-offset "${MQ[@]}" topics -J -t "%DLQ%$1" |
		jq -s 'map(.end_offset - .start_offset) | add'
}

# ms_to_iso MS [OFFSET-HOURS]: MS as ISO 8601 with milliseconds, in UTC
# (Z) or at a zone offset of OFFSET-HOURS (+hh:00).
ms_to_iso() {
	local ms=$1 h=${2:-}
	if [ -z "$h" ]; then
		printf '%s.%03dZ\n' "$(date -u -d "@$((ms / 1000))" +%Y-%m-%dT%H:%M:%S)" $((ms % 1000))
	else
		printf '%s.%03d+%02d:00\n' \
			"$(date -u -d "@$((ms / 1000 + h * 3600))" +%Y-%m-%dT%H:%M:%S)" \
			$((ms % 1000)) "$h"
	fi
}

@test "mq-replay --help and --version" {
	run --separate-stderr -0 mq-replay --help
	[[ $output == *"usage: mq-replay"* ]]
	[[ $output == *"--purge"* && $output == *"--again"* ]]
	[ -z "$stderr" ]
	run --separate-stderr -0 mq-replay --version
	[[ $output =~ ^mq-replay\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "usage errors exit 64 and name what is wrong" {
	run --separate-stderr -64 mq-replay --list
	[[ $stderr == *"-g GROUP is required"* ]]
	run --separate-stderr -64 mq-replay -g '../x' --list
	[[ $stderr == *"../x"* ]]
	run --separate-stderr -64 mq-replay -g g --to '%DLQ%g'
	[[ $stderr == *"reserved"* ]]
	run --separate-stderr -64 mq-replay -g g --since yesterday
	[[ $stderr == *"--since yesterday"* ]]
	run --separate-stderr -64 mq-replay -g g --before 2026-02-30
	[[ $stderr == *"no such date"* ]]
	run --separate-stderr -64 mq-replay -g g --before 2026-11-21T25:00Z
	run --separate-stderr -64 mq-replay -g g --since -2x
	[[ $stderr == *"-2x"* ]]
	run --separate-stderr -64 mq-replay -g g --from 5 --until 3
	[[ $stderr == *"--from 5"* ]]
	run --separate-stderr -64 mq-replay -g g --from -1
	run --separate-stderr -64 mq-replay -g g '%DLQ%other/0/3'
	[[ $stderr == *"not a dead letter of group g"* ]]
	run --separate-stderr -64 mq-replay -g g '%DLQ%g/1/3'
	run --separate-stderr -64 mq-replay -g g 'x3'
	run --separate-stderr -64 mq-replay -g g --purge
	[[ $stderr == *"--before"* ]]
	run --separate-stderr -64 mq-replay -g g --execute
	run --separate-stderr -64 mq-replay -g g --purge --until 3 --dry-run --execute
	run --separate-stderr -64 mq-replay -g g --list --to t
	run --separate-stderr -64 mq-replay -g g --list --purge
	run --separate-stderr -64 mq-replay -g g --show 1 2
	run --separate-stderr -64 mq-replay -g g --show x
	run --separate-stderr -64 mq-replay -g g --purge --until 3 --key k
	[ -z "$output" ]
}

@test "a broker that cannot be reached: 69" {
	run --separate-stderr -69 mq-replay -b "unix:$T/nobody.sock" -g g --list
	run --separate-stderr -69 mq-replay -b "unix:$T/nobody.sock" -g g
}

@test "a group without dead letters: empty listing, nothing to replay, exit 0" {
	start_store
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g nobody --list
	[ -z "$output" ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g nobody
	[ -z "$output" ]
	[[ $stderr == *"no dead letters"* ]]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g nobody --purge --until 5
	[[ $stderr == *"nothing to purge"* ]]
	# An id of an empty queue names nothing: 65.
	run --separate-stderr -65 mq-replay "${MQ[@]}" -g nobody 0
	[[ $stderr == *"no dead letter %DLQ%nobody/0/0"* ]]
}

@test "end to end: failures land in the DLQ, are listed, replayed after the fix, processed; no lag left" {
	start_store --partitions 3
	printf '%s\n' "c1 ok-1" "c2 bad-2" "c3 ok-3" "c4 bad-4" "c5 ok-5" \
		"c6 bad-6" | send_keyed orders -H trace=t1
	consume orders billing "$FAIL"
	[ "$(dlq_count billing)" -eq 3 ]

	# The listing: one row per dead letter, with the reason.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --list
	[ "${#lines[@]}" -eq 4 ]
	[[ ${lines[0]} == "DLQ-OFFSET  ORIGINAL-ID"*"REPLAYED  REASON" ]]
	local l
	for l in "${lines[@]:1}"; do
		[[ $l =~ ^[0-2]\ +orders/[0-9]+/[0-9]+\ +c[246]\ +2\ +3\ +[0-9T:.-]+Z\ +no\ +no\ ok\ in\ message$ ]]
	done
	run -0 mq-replay "${MQ[@]}" -g billing --list -J
	[ "$(jq -r .reason <<< "$output" | sort -u)" = "no ok in message" ]
	[ "$(jq -r .value <<< "$output" | sort | tr '\n' ' ')" = "bad-2 bad-4 bad-6 " ]
	[ "$(jq -r .replayed <<< "$output" | sort -u)" = false ]

	# The bug is fixed: the command succeeds on everything now.
	local fixed='cat >> "$OUT"; echo >> "$OUT"'
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing
	[ "${#lines[@]}" -eq 3 ]
	for l in "${lines[@]}"; do
		[[ $l =~ ^%DLQ%billing/0/[0-2]\ -\>\ orders/[0-2]/[0-9]+$ ]]
	done
	OUT=$T/processed consume orders billing "$fixed"
	[ "$(sort "$T/processed" | tr '\n' ' ')" = "bad-2 bad-4 bad-6 " ]
	# Still no consumer running: the group has nothing left to do.
	run -0 mq-offset "${MQ[@]}" groups -g billing -J
	[ "$(jq -s 'map(select(.topic == "orders") | .lag) | add' <<< "$output")" -eq 0 ]
	[ "$(jq -s 'map(select(.total_lag != null) | .total_lag) | add' <<< "$output")" -eq 0 ]
	# And the listing says so.
	run -0 mq-replay "${MQ[@]}" -g billing --list
	for l in "${lines[@]:1}"; do
		[[ $l =~ \ yes\ +no\ ok\ in\ message$ ]]
	done
	run -0 mq-replay "${MQ[@]}" -g billing --list -J
	[ "$(jq -r .replayed <<< "$output" | sort -u)" = true ]
	[ "$(jq -r '.new_id | test("^orders/[0-2]/[0-9]+$")' <<< "$output" | sort -u)" = true ]
}

@test "a replay goes back to the original partition with key, value and headers, minus the DLQ's, plus its origin" {
	start_store --partitions 3
	printf '%s\n' "a bad-a" "b bad-b" "c bad-c" "d bad-d" |
		send_keyed orders -H trace=t1 -H mq.dlq.fake=x
	consume orders billing "$FAIL"
	run -0 mq-replay "${MQ[@]}" -g billing -q
	[ -z "$output" ]
	run -0 mq-recv "${MQ[@]}" -t orders -e -J
	# Each replayed copy sits in the partition of its original.
	run -0 jq -r 'select(.headers["mq.replayed-from"]) |
		[.key, .value, .partition, .headers.trace,
		 (.headers | keys | join(","))] | @tsv' <<< "$output"
	[ "${#lines[@]}" -eq 4 ]
	local orig
	orig=$(mq-recv "${MQ[@]}" -t orders -e -J | jq -r 'select(.headers["mq.replayed-from"] | not) | [.key, .partition] | @tsv' | sort)
	[ "$(printf '%s\n' "${lines[@]}" | cut -f1,3 | sort)" = "$orig" ]
	for l in "${lines[@]}"; do
		[[ $l =~ ^([a-d])$'\t'bad-([a-d])$'\t'[0-2]$'\t't1$'\t'mq.replayed-from,trace$ ]]
		[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]
	done
	# The header says which dead letter each came from.
	run -0 mq-recv "${MQ[@]}" -t orders -e -J
	[ "$(jq -r 'select(.headers["mq.replayed-from"]) | .headers["mq.replayed-from"]' <<< "$output" | sort)" = \
	  "$(printf '%%DLQ%%billing/0/%d\n' 0 1 2 3)" ]
}

@test "replaying twice replays nothing the second time; --again does it again" {
	start_store
	dead 3
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing
	[ "${#lines[@]}" -eq 3 ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing
	[ -z "$output" ]
	[[ $stderr == *"nothing to replay: 3 dead letters were replayed already"* ]]
	# Named explicitly, still not again.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing 1
	[ -z "$output" ]
	[[ $stderr == *"%DLQ%billing/0/1 was replayed already, as orders/0/"* ]]
	run -0 mq-recv "${MQ[@]}" -t orders -e -J
	[ "$(jq -r 'select(.headers["mq.replayed-from"]) | .value' <<< "$output" | sort | tr '\n' ' ')" = "bad1 bad2 bad3 " ]
	# --again, for one of them.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --again 1
	[[ $output =~ ^%DLQ%billing/0/1\ -\>\ orders/0/[0-9]+$ ]]
	run -0 mq-recv "${MQ[@]}" -t orders -e -J
	[ "$(jq -r 'select(.headers["mq.replayed-from"]) | .value' <<< "$output" | sort | tr '\n' ' ')" = "bad1 bad2 bad2 bad3 " ]
	# The listing shows the latest replay.
	run -0 mq-replay "${MQ[@]}" -g billing --show 1 -J
	[ "$(jq -r .new_id <<< "$output")" = "$(mq-recv "${MQ[@]}" -t orders -e -J |
		jq -r 'select(.headers["mq.replayed-from"] == "%DLQ%billing/0/1") | .id' | tail -n 1)" ]
}

@test "kill -9 part of the way through, run again: every dead letter replayed exactly once" {
	start_store
	local n=300 i
	for i in $(seq 1 $n); do echo "k$i v$i"; done | send_keyed jobs
	run -0 mq-recv "${MQ[@]}" -t jobs -g w "${G[@]}" --from-new beginning -e -q \
		--retries 0 --exec 'exit 7'
	[ "$(dlq_count w)" -eq $n ]

	# First kill, made certain to land part of the way through: stdout
	# is a pipe that is full but for one page, so the run blocks after
	# about 4 KiB of ids (some 150 of the 300) whatever the speed of the
	# disk. With a broker, stop it too, so that a request is in flight.
	mkfifo "$T/fifo"
	sleep 600 < "$T/fifo" 3>&- &
	SLEEPER=$!
	exec 7> "$T/fifo"
	timeout 1 cat /dev/zero >&7 || true
	mq-replay "${MQ[@]}" -g w --to out >&7 2> "$T/err1" 3>&- &
	REPLAY_PID=$!
	dd if="$T/fifo" of=/dev/null bs=4096 count=1 iflag=fullblock 2> /dev/null
	replayed_some() {
		[ "$(mq-replay "${MQ[@]}" -g w --list -J | jq -s 'map(select(.replayed)) | length')" -gt 0 ]
	}
	wait_for replayed_some
	[ -n "${BROKER_PID:-}" ] && kill -STOP "$BROKER_PID"
	kill -KILL "$REPLAY_PID"
	wait "$REPLAY_PID" 2> /dev/null || true
	REPLAY_PID=
	[ -n "${BROKER_PID:-}" ] && kill -CONT "$BROKER_PID"
	exec 7>&-
	kill "$SLEEPER"
	SLEEPER=
	local done1
	done1=$(mq-replay "${MQ[@]}" -g w --list -J | jq -s 'map(select(.replayed)) | length')
	echo "# first run killed after $done1 of $n" >&3
	[ "$done1" -gt 0 ] && [ "$done1" -lt $n ]

	# Then kills after a few more lines, wherever they land.
	local want
	for want in 3 10; do
		: > "$T/run$want"
		mq-replay "${MQ[@]}" -g w --to out > "$T/run$want" 2> "$T/err$want" 3>&- &
		REPLAY_PID=$!
		while mapfile -t out < "$T/run$want"; [ "${#out[@]}" -lt "$want" ] &&
			kill -0 "$REPLAY_PID" 2>/dev/null; do :; done
		[ -n "${BROKER_PID:-}" ] && kill -STOP "$BROKER_PID"
		kill -KILL "$REPLAY_PID" 2>/dev/null || true
		wait "$REPLAY_PID" 2>/dev/null || true
		REPLAY_PID=
		[ -n "${BROKER_PID:-}" ] && kill -CONT "$BROKER_PID"
	done
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g w --to out
	# A rerun replays nothing.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g w --to out
	[ -z "$output" ]
	[[ $stderr == *"$n dead letters were replayed already"* ]]
	# Each of them is in the target once, with its origin.
	run -0 mq-recv "${MQ[@]}" -t out -e -J
	[ "$(jq -r '.headers["mq.replayed-from"]' <<< "$output" | sort)" = \
	  "$(for i in $(seq 0 $((n - 1))); do echo "%DLQ%w/0/$i"; done | sort)" ]
	[ "$(jq -r .value <<< "$output" | sort)" = "$(for i in $(seq 1 $n); do echo "v$i"; done | sort)" ]
	run -0 mq-replay "${MQ[@]}" -g w --list -J
	[ "$(jq -r .replayed <<< "$output" | sort | uniq -c | tr -s ' ')" = " $n true" ]
}

@test "killed after a resend but before its done record: the next run records it, sends the rest" {
	start_store
	dead 3
	# mq-replay prints a line once the broker acknowledged a resend and
	# before it writes the done record. With its stdout a pipe that is
	# full, it blocks right there.
	mkfifo "$T/fifo"
	sleep 600 < "$T/fifo" 3>&- &
	SLEEPER=$!
	exec 7> "$T/fifo"
	timeout 1 cat /dev/zero >&7 || true
	mq-replay "${MQ[@]}" -g billing >&7 2> "$T/err1" 3>&- &
	REPLAY_PID=$!
	replayed_once() {
		mq-recv "${MQ[@]}" -t orders -e -J |
			jq -e 'select(.headers["mq.replayed-from"])' > /dev/null
	}
	wait_for replayed_once
	sleep 0.2
	# The replay log holds the intent only.
	[ "$(mq-offset "${MQ[@]}" topics -J -t '%RPL%billing' | jq .end_offset)" -eq 1 ]
	kill -KILL "$REPLAY_PID"
	wait "$REPLAY_PID" || true
	REPLAY_PID=
	exec 7>&-
	kill "$SLEEPER"
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing
	[[ $stderr =~ %DLQ%billing/0/0\ had\ been\ replayed\ as\ orders/0/[0-9]+\ by\ a\ run\ that\ was\ interrupted\;\ recorded\ now ]]
	[ "$(cut -d' ' -f1 <<< "$output" | tr '\n' ' ')" = "%DLQ%billing/0/1 %DLQ%billing/0/2 " ]
	run -0 mq-recv "${MQ[@]}" -t orders -e -J
	[ "$(jq -r 'select(.headers["mq.replayed-from"]) | .value' <<< "$output" | sort | tr '\n' ' ')" = "bad1 bad2 bad3 " ]
	run -0 mq-replay "${MQ[@]}" -g billing --list -J
	[ "$(jq -r .replayed <<< "$output" | sort -u)" = true ]
}

@test "a resend to a new topic that times out flushing goes once; the next run records it" {
	broker_only
	# The broker's fdatasync of the new topic's files stalls while
	# $T/gate exists (tests/unit/slow_fdatasync.c).
	LD_PRELOAD=$MQ_BUILD/tests/slow_fdatasync.so \
	MQ_SLOW_FDATASYNC_GATE=$T/gate MQ_SLOW_FDATASYNC_PATH=/topics/fresh/ \
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
		start_store --flush sync --flush-timeout 300
	dead 2
	touch "$T/gate"
	run --separate-stderr mq-replay "${MQ[@]}" -g billing --to fresh 0
	[ "$status" -eq 75 ]
	[[ $stderr == *"%DLQ%billing/0/0: not replayed"*"--flush-timeout"* ]]
	rm "$T/gate"
	# Written once, and never sent again by that run (readers see it once
	# the stalled flush has finished).
	wait_for eval '[ -n "$(mq-recv "${MQ[@]}" -t fresh -e)" ]'
	run -0 mq-recv "${MQ[@]}" -t fresh -e
	[ "$output" = bad1 ]
	# The next run finds it there, records it, and sends the other.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --to fresh
	[[ $stderr == *"%DLQ%billing/0/0 had been replayed as fresh/0/0 by a run that was interrupted; recorded now"* ]]
	[[ $output =~ ^%DLQ%billing/0/1\ -\>\ fresh/0/1$ ]]
	run -0 mq-recv "${MQ[@]}" -t fresh -e
	[ "$(tr '\n' ' ' <<< "$output")" = "bad1 bad2 " ]
}

@test "--to another topic, which is created; keys keep together" {
	start_store --partitions 3
	dead 4
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --to retry
	[ "${#lines[@]}" -eq 4 ]
	for l in "${lines[@]}"; do
		[[ $l =~ ^%DLQ%billing/0/[0-3]\ -\>\ retry/[0-2]/[0-9]+$ ]]
	done
	run -0 mq-recv "${MQ[@]}" -t retry -e -J
	[ "$(jq -r .value <<< "$output" | sort | tr '\n' ' ')" = "bad1 bad2 bad3 bad4 " ]
	# The same key goes where mq-send sends it.
	local k p
	for k in k1 k2 k3 k4; do
		p=$(echo "$k again" | mq-send "${MQ[@]}" -t retry -K ' ')
		[ "$(jq -r --arg k "$k" 'select(.key == $k) | .partition' <<< "$output")" = "$(cut -d/ -f2 <<< "$p")" ]
	done
	# The original topic got nothing.
	run -0 mq-recv "${MQ[@]}" -t orders -e -J
	[ -z "$(jq -r 'select(.headers["mq.replayed-from"]) | .id' <<< "$output")" ]
}

@test "--dry-run prints what would be sent and changes nothing" {
	start_store
	dead 3
	local before after
	before=$(mq-offset "${MQ[@]}" topics -J | jq -c '[.topic, .end_offset]')
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --dry-run
	[ "$output" = "$(printf '%%DLQ%%billing/0/%d -> orders/0 (dry run)\n' 0 1 2)" ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n -J
	[ "$(jq -r '[.dlq_id, .topic, .partition, .dry_run] | @tsv' <<< "$output" | head -n 1)" = \
	  "$(printf '%%DLQ%%billing/0/0\torders\t0\ttrue')" ]
	# No topic moved and no replay log was written.
	after=$(mq-offset "${MQ[@]}" topics -J | jq -c '[.topic, .end_offset]')
	[ "$after" = "$before" ]
	[[ $after != *"%RPL%"* ]]
	run -0 mq-replay "${MQ[@]}" -g billing --list
	[ "$(grep -Ec ' no +no ok in message$' <<< "$output")" -eq 3 ]
}

@test "selection: ids as arguments and on stdin, --from/--until, --key, combined with AND" {
	start_store
	dead 6
	# Ids, full or bare.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n '%DLQ%billing/0/4' 1
	[ "$(cut -d' ' -f1 <<< "$output" | tr '\n' ' ')" = "%DLQ%billing/0/1 %DLQ%billing/0/4 " ]
	# Ids on stdin: words, comments, JSON lines from a listing.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n - <<< $'# pick\n2 trailing words\n\n%DLQ%billing/0/5'
	[ "$(cut -d' ' -f1 <<< "$output" | tr '\n' ' ')" = "%DLQ%billing/0/2 %DLQ%billing/0/5 " ]
	run --separate-stderr -0 bash -c 'mq-replay "$@" -g billing -l -J | jq -c "select(.key == \"k3\")" | mq-replay "$@" -g billing -n -' _ "${MQ[@]}"
	[ "$output" = "%DLQ%billing/0/2 -> orders/0 (dry run)" ]
	run --separate-stderr -65 mq-replay "${MQ[@]}" -g billing -n - <<< 'orders/0/1'
	[[ $stderr == *"stdin line 1"* ]]
	run --separate-stderr -65 mq-replay "${MQ[@]}" -g billing -n - <<< '{"value":"x"}'
	# Two objects on one line: not one id, and neither is left out quietly.
	run --separate-stderr -65 mq-replay "${MQ[@]}" -g billing -n - \
		<<< '{"dlq_id":"%DLQ%billing/0/2"}{"dlq_id":"%DLQ%billing/0/4"}'
	[[ $stderr == *"stdin line 1"* ]]
	[ -z "$output" ]
	# An id beyond the end: 65, nothing done.
	run --separate-stderr -65 mq-replay "${MQ[@]}" -g billing 3 99
	[[ $stderr == *"no dead letter %DLQ%billing/0/99"*"offsets 0 to 5"* ]]
	[ -z "$output" ]
	# Offsets.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n --from 2 --until 4
	[ "$(cut -d' ' -f1 <<< "$output" | tr '\n' ' ')" = "%DLQ%billing/0/2 %DLQ%billing/0/3 %DLQ%billing/0/4 " ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n --from 4
	[ "${#lines[@]}" -eq 2 ]
	# Keys.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n -k k5
	[ "$output" = "%DLQ%billing/0/4 -> orders/0 (dry run)" ]
	# AND: an id outside --from selects nothing, and is no error.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n --from 3 1
	[ -z "$output" ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n --from 3 -k k2
	[ -z "$output" ]
	# The listing takes the same selection.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -l --until 1
	[ "${#lines[@]}" -eq 3 ]
	# A real replay of a selection, then the default takes the rest.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --from 1 --until 2
	[ "${#lines[@]}" -eq 2 ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing
	[ "$(cut -d' ' -f1 <<< "$output" | tr '\n' ' ')" = "%DLQ%billing/0/0 %DLQ%billing/0/3 %DLQ%billing/0/4 %DLQ%billing/0/5 " ]
}

@test "selection by time: --since and --before, ISO 8601 with zones and -DURATION" {
	start_store
	dead 2
	sleep 0.05
	printf '%s\n' "k3 bad3" "k4 bad4" | send_keyed orders
	consume orders billing "$FAIL"
	local t2 iso
	t2=$(mq-replay "${MQ[@]}" -g billing -l -J | jq -r 'select(.offset == 2) | .timestamp')
	iso=$(ms_to_iso "$t2")
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n --since "$iso"
	[ "$(cut -d' ' -f1 <<< "$output" | tr '\n' ' ')" = "%DLQ%billing/0/2 %DLQ%billing/0/3 " ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n --before "$iso"
	[ "$(cut -d' ' -f1 <<< "$output" | tr '\n' ' ')" = "%DLQ%billing/0/0 %DLQ%billing/0/1 " ]
	# The same instant written at +02:00.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n --since "$(ms_to_iso "$t2" 2)"
	[ "${#lines[@]}" -eq 2 ]
	# Relative times and dates.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n --since -1h
	[ "${#lines[@]}" -eq 4 ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n --before -1h
	[ -z "$output" ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -n --since 2000-01-01 --before 2999-12-31T23:59
	[ "${#lines[@]}" -eq 4 ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing -l --since "$iso" -k k4
	[ "${#lines[@]}" -eq 2 ]
	[[ ${lines[1]} == "3 "* ]]
}

@test "--show prints one dead letter in full; -J as one JSON object" {
	start_store
	printf '%s\n' "k1 line one" | send_keyed orders -H trace=t1
	consume orders billing "$FAIL"
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --show 0
	[ "${lines[0]}" = "id: %DLQ%billing/0/0" ]
	[[ ${lines[1]} =~ ^timestamp:\ [0-9-]+T[0-9:.]+Z$ ]]
	[ "${lines[2]}" = "key: k1" ]
	[ "${lines[3]}" = "replayed: no" ]
	[ "${lines[4]}" = "headers:" ]
	[[ $output == *$'\n  trace: t1\n'* ]]
	[[ $output == *$'\n  mq.dlq.id: orders/0/0\n'* ]]
	[[ $output == *$'\n  mq.dlq.stderr: no ok in message\n    details follow\n'* ]]
	# An empty line, then the value as it is.
	[ "$(sed '1,/^$/d' <<< "$output")" = "line one" ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --show '%DLQ%billing/0/0' -J
	[ "$(jq -r '[.id, .key, .value, .headers.trace, .replayed, .reason] | @tsv' <<< "$output")" = \
	  "$(printf '%%DLQ%%billing/0/0\tk1\tline one\tt1\tfalse\tno ok in message')" ]
	mq-replay "${MQ[@]}" -g billing -q
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --show 0
	[[ ${lines[3]} =~ ^replayed:\ yes,\ as\ orders/0/[0-9]+$ ]]
	run --separate-stderr -65 mq-replay "${MQ[@]}" -g billing --show 7
	[[ $stderr == *"no dead letter %DLQ%billing/0/7"* ]]
}

@test "--purge lists what would go and changes nothing without --execute" {
	start_store
	dead 5
	mq-replay "${MQ[@]}" -g billing -q 0 1
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --purge --until 2
	[ "${#lines[@]}" -eq 4 ]
	[[ ${lines[3]} == "2 "* ]]
	[[ $stderr == *"dry run: would drop 3 dead letters (%DLQ%billing/0/0 to %DLQ%billing/0/2), 1 never replayed"* ]]
	[ "$(dlq_count billing)" -eq 5 ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --purge --until 2 --execute
	[[ $stderr == *"dropped 3 dead letters"*"now starts at offset 3"* ]]
	[ "$(dlq_count billing)" -eq 2 ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --list
	[ "${#lines[@]}" -eq 3 ]
	[[ ${lines[1]} == "3 "* ]]
	# Dropped dead letters are no more: an id of one is an error.
	run --separate-stderr -65 mq-replay "${MQ[@]}" -g billing 1
	[[ $stderr == *"holds offsets 3 to 4"* ]]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --purge --until 1 --execute
	[[ $stderr == *"nothing to purge"* ]]
	# What is left can still be replayed.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing
	[ "$(cut -d' ' -f1 <<< "$output" | tr '\n' ' ')" = "%DLQ%billing/0/3 %DLQ%billing/0/4 " ]
}

@test "--purge --before TIME drops what failed before it" {
	start_store
	dead 2
	sleep 0.05
	printf '%s\n' "k3 bad3" | send_keyed orders
	consume orders billing "$FAIL"
	local t2
	t2=$(mq-replay "${MQ[@]}" -g billing -l -J | jq -r 'select(.offset == 2) | .timestamp')
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --purge --before "$(ms_to_iso "$t2")" -J
	[ "$(jq -r .id <<< "$output" | tr '\n' ' ')" = "%DLQ%billing/0/0 %DLQ%billing/0/1 " ]
	[ "$(dlq_count billing)" -eq 3 ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --purge --before "$(ms_to_iso "$t2")" --execute -q
	[ -z "$output$stderr" ]
	[ "$(dlq_count billing)" -eq 1 ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing --purge --before -1d
	[[ $stderr == *"nothing to purge"* ]]
}

@test "dead letters that cannot be replayed are each reported, the run goes on: 75" {
	broker_only
	start_store
	dead 2
	# The broker no longer creates topics on first use.
	stop_broker
	start_store --no-auto-create
	run --separate-stderr -75 mq-replay "${MQ[@]}" -g billing --to nowhere
	[ -z "$output" ]
	[[ $stderr == *"%DLQ%billing/0/0: not replayed: "*"nowhere"* ]]
	[[ $stderr == *"%DLQ%billing/0/1: not replayed: "*"nowhere"* ]]
	# Nothing counts as replayed: they can go elsewhere, once each.
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing
	[ "${#lines[@]}" -eq 2 ]
	run --separate-stderr -0 mq-replay "${MQ[@]}" -g billing
	[ -z "$output" ]
	run -0 mq-recv "${MQ[@]}" -t orders -e -J
	[ "$(jq -r 'select(.headers["mq.replayed-from"]) | .value' <<< "$output" | sort | tr '\n' ' ')" = "bad1 bad2 " ]
}
