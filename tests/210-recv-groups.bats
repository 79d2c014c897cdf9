#!/usr/bin/env bats
# mq-recv -g: consumer groups, commit modes, resuming, sharing partitions,
# losing membership.

load helpers

setup() { mq_setup; }
teardown() { mq_teardown; }

# Fast group settings for tests.
G=(--session-timeout 2000 --commit-interval 100ms)

@test "-e with a group reads to the end, commits, and the next run resumes" {
	start_store --partitions 3
	seq 1 30 | send t
	run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning -e
	[ "$(sort -n <<< "$output")" = "$(seq 1 30)" ]
	run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" -e
	[ -z "$output" ]
	seq 31 35 | send t
	run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" -e
	[ "$(sort -n <<< "$output")" = "$(seq 31 35)" ]
}

@test "-n counts exactly and commits exactly what was printed" {
	start_store
	seq 1 10 | send t -p 0
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning -n 3
	[ "$output" = "$(seq 1 3)" ]
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" -n 3
	[ "$output" = "$(seq 4 6)" ]
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" -e
	[ "$output" = "$(seq 7 10)" ]
}

@test "a new group starts at the end by default, or where --from-new says" {
	start_store
	seq 1 5 | send t
	run -0 mq-recv "${MQ[@]}" -t t -g late "${G[@]}" -e
	[ -z "$output" ]
	seq 6 8 | send t
	# The position was committed when the group first read: nothing is
	# skipped between runs.
	run -0 mq-recv "${MQ[@]}" -t t -g late "${G[@]}" -e
	[ "$output" = "$(seq 6 8)" ]
	run -0 mq-recv "${MQ[@]}" -t t -g early "${G[@]}" --from-new beginning -e
	[ "$output" = "$(seq 1 8)" ]
}

@test "--commit before (at-most-once) commits what it is about to print" {
	start_store
	seq 1 10 | send t -p 0
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning --commit before -n 4
	[ "$output" = "$(seq 1 4)" ]
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --commit before -e
	[ "$output" = "$(seq 5 10)" ]
}

@test "--commit manual never commits; mq-offset commit does" {
	start_store
	seq 1 5 | send t -p 0
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning --commit manual -e -f '%i\n'
	[ "${#lines[@]}" -eq 5 ]
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning --commit manual -e -f '%i %v\n'
	[ "${lines[0]}" = "t/0/0 1" ]
	# The pipeline hands the ids it finished to mq-offset commit.
	mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning --commit manual -e -n 3 -f '%i\n' |
		mq-offset commit "${MQ[@]}" -g g
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --commit manual -e
	[ "$output" = "$(seq 4 5)" ]
}

@test "SIGTERM commits exactly what was printed: nothing twice, nothing skipped" {
	start_store --partitions 2
	seq 1 50 | send t
	setsid mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning > "$T/out1" 3>&- &
	local pid=$!
	RECV_PIDS=$pid
	wait_for lines_ge "$T/out1" 50
	seq 51 100 | send t
	wait_for lines_ge "$T/out1" 100
	kill -TERM "$pid"
	local st=0
	wait "$pid" || st=$?
	[ "$st" -eq 0 ]
	seq 101 120 | send t
	mq-recv "${MQ[@]}" -t t -g g "${G[@]}" -e > "$T/out2"
	[ "$(sort -n "$T/out1" "$T/out2")" = "$(seq 1 120)" ]
}

@test "a closed stdout commits only what was written" {
	start_store
	seq 1 50000 | send t -p 0 --async
	mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning | head -n 1 > /dev/null
	# Much more than a pipe holds was never written: it comes next.
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" -e
	[ "${#lines[@]}" -gt 10000 ]
	[ "${lines[-1]}" = 50000 ]
	[ "$(( 50000 - ${lines[0]} + 1 ))" -eq "${#lines[@]}" ]
}

@test "a closed stdout commits every message its reader took" {
	start_store
	seq -f 'message-number-%010g' 1 40000 | send t -p 0 --async
	# dd takes exactly 102,400 bytes: 3,938 whole messages of 26 bytes,
	# all of them written, so all committed.
	mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning |
		dd bs=4096 count=25 iflag=fullblock of=/dev/null status=none
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" -e -n 1
	local first=${output##*-}
	[ "$((10#$first - 1))" -ge 3938 ]
}

@test "a reader slower than the session timeout does not cost the membership" {
	start_store
	seq 1 50000 | send t -p 0 --async
	# The pipe fills at once and stays full for longer than the session.
	run -0 bash -c 'mq-recv "$@" -t t -g g --session-timeout 1000 \
		--from-new beginning -e 2> "$0" | { sleep 2.5; wc -l; }
		echo "status ${PIPESTATUS[0]}"' "$T/err" "${MQ[@]}"
	[ "${lines[0]}" = 50000 ]
	[ "${lines[1]}" = "status 0" ]
	[ ! -s "$T/err" ]
	run -0 mq-recv "${MQ[@]}" -t t -g g -e
	[ -z "$output" ]
}

@test "two members split the partitions; when one is killed the other finishes" {
	# A data directory cannot be given several partitions from here.
	broker_only
	start_store --partitions 4
	local p
	for p in 0 1 2 3; do seq 1 10 | send t -p $p; done
	# Each command records what it handled, then takes its time.
	local cmd='echo "$MQ_ID" >> "$OUT"; sleep 0.1'
	OUT=$T/a setsid mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning \
		--commit-interval 0 --exec "$cmd" 2> "$T/a.err" 3>&- &
	local a=$!
	RECV_PIDS=$a
	wait_for lines_ge "$T/a" 1
	OUT=$T/b setsid mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning \
		--commit-interval 0 --exec "$cmd" 2> "$T/b.err" 3>&- &
	local b=$!
	RECV_PIDS="$a $b"
	wait_for lines_ge "$T/b" 2
	# While both live, the partitions are split: none is handled by both
	# after the rebalance (b's first id on a partition comes after a's last).
	sleep 0.3
	local pa pb
	pa=$(tail -n 2 "$T/a" | cut -d/ -f2 | sort -u)
	pb=$(tail -n 2 "$T/b" | cut -d/ -f2 | sort -u)
	[ -z "$(comm -12 <(echo "$pa") <(echo "$pb"))" ]
	# Kill a and its command at once, as a crash would.
	crash "$a"
	all_done() { [ "$(cat "$T/a" "$T/b" | sort -u | wc -l)" -eq 40 ]; }
	wait_for all_done
	kill -TERM "$b"
	local st=0
	wait "$b" || st=$?
	[ "$st" -eq 0 ]
	# Every message handled; the only repeats are what a had in hand.
	[ "$(cat "$T/a" "$T/b" | sort -u | wc -l)" -eq 40 ]
	[ "$(cat "$T/a" "$T/b" | wc -l)" -le 42 ]
}

@test "a member that lost its membership exits 75" {
	broker_only
	start_store
	seq 1 3 | send t
	setsid mq-recv "${MQ[@]}" -t t -g g --session-timeout 1000 --from-new beginning > "$T/out" 2> "$T/err" 3>&- &
	local pid=$!
	RECV_PIDS=$pid
	wait_for lines_ge "$T/out" 3
	# Frozen past its session timeout, it is dropped from the group.
	kill -STOP "$pid"
	sleep 2
	kill -CONT "$pid"
	local st=0
	wait "$pid" || st=$?
	[ "$st" -eq 75 ]
	grep -q "membership" "$T/err"
}
