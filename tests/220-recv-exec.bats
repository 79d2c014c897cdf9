#!/usr/bin/env bats
# mq-recv --exec: a command per message, delivery guarantees across
# crashes, retries, the dead-letter queue, concurrency.

load helpers

setup() { mq_setup; }
teardown() { mq_teardown; }

G=(--session-timeout 2000)

# ids N TOPIC: the ids of messages 0..N-1 of partition 0.
ids() {
	local i
	for ((i = 0; i < $1; i++)); do echo "$2/0/$i"; done
}

@test "--exec environment: MQ_TOPIC, MQ_PARTITION, MQ_OFFSET, MQ_ID, MQ_KEY, MQ_ATTEMPT, headers" {
	start_store
	send t -p 0 -k the-key -H trace-id=abc -H Content.Type=text <<< "some value"
	OUT=$T/x run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -e --exec \
		'cat > "$OUT.value"; env | grep -E "^MQ_(TOPIC|PARTITION|OFFSET|ID|KEY|ATTEMPT|HEADER_[A-Z_]*)=" | sort > "$OUT.env"; echo "$MQ_TIMESTAMP" > "$OUT.ts"'
	[ "$(cat "$T/x.value")" = "some value" ]
	[ "$(cat "$T/x.env")" = "$(printf '%s\n' MQ_ATTEMPT=1 \
		MQ_HEADER_CONTENT_TYPE=text MQ_HEADER_TRACE_ID=abc \
		MQ_ID=t/0/0 MQ_KEY=the-key MQ_OFFSET=0 MQ_PARTITION=0 \
		MQ_TOPIC=t)" ]
	[[ $(cat "$T/x.ts") =~ ^[0-9]{13}$ ]]
}

@test "at-least-once: killed mid-batch with its commands, nothing is lost" {
	start_store
	seq 1 60 | send t -p 0
	# A command marks its message done only when it finishes.
	local cmd='sleep 0.02; echo "$MQ_ID" >> "$OUT"'
	OUT=$T/done setsid mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning \
		--commit-interval 0 --concurrency 4 --exec "$cmd" 2> "$T/err1" 3>&- &
	local pid=$!
	RECV_PIDS=$pid
	wait_for lines_ge "$T/done" 20
	crash "$pid"
	RECV_PIDS=
	local first
	first=$(wc -l < "$T/done")
	[ "$first" -lt 60 ]
	OUT=$T/done run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" \
		--commit-interval 0 --concurrency 4 -e --exec "$cmd"
	# Every id was processed at least once ...
	[ "$(sort -u "$T/done")" = "$(ids 60 t | sort)" ]
	# ... and the repeats are at most what was in flight (4 commands).
	[ "$(wc -l < "$T/done")" -le 64 ]
}

@test "a new group killed before its first commit resumes where it started" {
	start_store
	seq 1 3 | send t -p 0
	# A new group starts at the end (offset 3), and commits only hourly.
	OUT=$T/out setsid mq-recv "${MQ[@]}" -t t -g g "${G[@]}" \
		--commit-interval 1h --exec 'echo "$MQ_ID" >> "$OUT"; sleep 30' \
		2> "$T/err1" 3>&- &
	local pid=$!
	RECV_PIDS=$pid
	# Its starting position is committed as soon as it has one ...
	wait_for eval '[ "$(committed g)" = "t/0=3 " ]'
	echo new | send t -p 0
	wait_for lines_ge "$T/out" 1
	[ "$(cat "$T/out")" = t/0/3 ]
	# ... so killed in the middle of the first message, it comes back to
	# that message, not to the end that has moved past it.
	crash "$pid"
	RECV_PIDS=
	OUT=$T/out2 run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" \
		-e --exec 'echo "$MQ_ID" >> "$OUT"'
	[ "$(cat "$T/out2")" = t/0/3 ]
	# With --commit manual, mq-recv commits nothing, not even that.
	run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -g m "${G[@]}" \
		--commit manual -e
	[ "$(committed m)" = "" ]
}

@test "at-most-once: killed mid-batch, nothing runs twice and at most the in-flight are lost" {
	start_store
	seq 1 60 | send t -p 0
	local cmd='echo "$MQ_ID" >> "$OUT.started"; sleep 0.02; echo "$MQ_ID" >> "$OUT.done"'
	OUT=$T/x setsid mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning \
		--commit before --concurrency 4 --exec "$cmd" 2> "$T/err1" 3>&- &
	local pid=$!
	RECV_PIDS=$pid
	wait_for lines_ge "$T/x.done" 20
	crash "$pid"
	RECV_PIDS=
	OUT=$T/x run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" \
		--commit before --concurrency 4 -e --exec "$cmd"
	# Never started twice.
	[ -z "$(sort "$T/x.started" | uniq -d)" ]
	# Lost: at most the 4 that were running.
	local finished
	finished=$(sort -u "$T/x.done" | wc -l)
	[ "$finished" -ge 56 ]
	[ "$finished" -le 60 ]
}

@test "SIGTERM lets running commands finish and commits exactly what they did" {
	start_store
	seq 1 40 | send t -p 0
	local cmd='sleep 0.05; echo "$MQ_ID" >> "$OUT"'
	OUT=$T/done setsid mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning \
		--commit-interval 10s --concurrency 3 --exec "$cmd" 2> "$T/err1" 3>&- &
	local pid=$!
	RECV_PIDS=$pid
	wait_for lines_ge "$T/done" 10
	kill -TERM "$pid"
	local st=0
	wait "$pid" || st=$?
	[ "$st" -eq 0 ]
	local first
	first=$(wc -l < "$T/done")
	[ "$first" -lt 40 ]
	OUT=$T/done run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" \
		-e --exec "$cmd"
	# Exactly once each, in the end.
	[ "$(sort "$T/done")" = "$(ids 40 t | sort)" ]
}

@test "a poison message goes to the dead-letter queue after its retries" {
	start_store
	printf '%s\n' one two poison three four | send t -p 0
	local cmd='v=$(cat); if [ "$v" = poison ]; then echo "cannot digest $v" >&2; exit 3; fi; echo "$v" >> "$OUT"'
	OUT=$T/done run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" \
		--from-new beginning -e --retries 2 --backoff 10ms:40ms --exec "$cmd"
	# The rest of the partition was processed.
	[ "$(cat "$T/done")" = "$(printf '%s\n' one two three four)" ]
	[[ $stderr == *"t/0/2"*"attempt 1 of 3"* ]]
	[[ $stderr == *"cannot digest poison"* ]]
	# The dead letter: original value and headers, plus why.
	run -0 mq-recv "${MQ[@]}" -t '%DLQ%g' -e -J
	[ "${#lines[@]}" -eq 1 ]
	local j=${lines[0]}
	[ "$(jq -r .value <<< "$j")" = poison ]
	[ "$(jq -r '.headers["mq.dlq.id"]' <<< "$j")" = t/0/2 ]
	[ "$(jq -r '.headers["mq.dlq.topic"]' <<< "$j")" = t ]
	[ "$(jq -r '.headers["mq.dlq.partition"]' <<< "$j")" = 0 ]
	[ "$(jq -r '.headers["mq.dlq.offset"]' <<< "$j")" = 2 ]
	[ "$(jq -r '.headers["mq.dlq.group"]' <<< "$j")" = g ]
	[ "$(jq -r '.headers["mq.dlq.attempts"]' <<< "$j")" = 3 ]
	[ "$(jq -r '.headers["mq.dlq.exit"]' <<< "$j")" = 3 ]
	[ "$(jq -r '.headers["mq.dlq.stderr"]' <<< "$j")" = "cannot digest poison" ]
	[[ $(jq -r '.headers["mq.dlq.failed-at"]' <<< "$j") =~ ^[0-9]{13}$ ]]
	# All of it, the poison included, is committed.
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" -e
	[ -z "$output" ]
}

@test "a dead letter keeps the key and headers; MQ_ATTEMPT counts the runs" {
	start_store
	send t -p 0 -k k1 -H origin=test <<< "bad"
	run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" \
		--from-new beginning -e --retries 1 --backoff 0 \
		--exec 'echo "attempt $MQ_ATTEMPT" >&2; kill -KILL $$'
	[[ $stderr == *"attempt 1"*"attempt 2"* ]]
	run -0 mq-recv "${MQ[@]}" -t '%DLQ%g' -e -J
	[ "$(jq -r .key <<< "$output")" = k1 ]
	[ "$(jq -r .headers.origin <<< "$output")" = test ]
	[ "$(jq -r '.headers["mq.dlq.exit"]' <<< "$output")" = "signal 9" ]
	[ "$(jq -r '.headers["mq.dlq.attempts"]' <<< "$output")" = 2 ]
}

@test "without -g there is no dead-letter queue: exhausted retries exit 75" {
	start_store
	printf '%s\n' a b | send t -p 0
	run --separate-stderr -75 mq-recv "${MQ[@]}" -t t -e --retries 1 --backoff 0 \
		--exec 'exit 1'
	[[ $stderr == *"giving up"* ]]
}

@test "--concurrency runs commands at once, committing only contiguous offsets" {
	start_store
	seq 0 7 | send t -p 0
	# Offset 0 is slow; the others finish at once.
	local cmd='v=$(cat); [ "$v" = 0 ] && sleep 30; echo "$MQ_ID" >> "$OUT"'
	OUT=$T/done setsid mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning \
		--commit-interval 0 --concurrency 8 --exec "$cmd" 2> "$T/err" 3>&- &
	local pid=$!
	RECV_PIDS=$pid
	wait_for lines_ge "$T/done" 7
	sleep 0.3
	crash "$pid"
	RECV_PIDS=
	# Seven ran in parallel with the slow one; none could be committed
	# past offset 0, so all eight come again.
	: > "$T/done"
	OUT=$T/done run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" \
		--concurrency 8 -e --exec 'echo "$MQ_ID" >> "$OUT"'
	[ "$(sort "$T/done")" = "$(ids 8 t | sort)" ]
}

@test "a second SIGTERM stops waiting for commands" {
	start_store
	seq 1 2 | send t -p 0
	OUT=$T/started setsid mq-recv "${MQ[@]}" -t t -g g "${G[@]}" --from-new beginning \
		--exec 'echo started >> "$OUT"; sleep 30' > /dev/null 2> "$T/err" 3>&- &
	local pid=$!
	RECV_PIDS=$pid
	wait_for test -s "$T/started"
	kill -TERM "$pid"
	sleep 0.2
	kill -0 "$pid"
	kill -TERM "$pid"
	local st=0
	wait "$pid" || st=$?
	[ "$st" -eq 0 ]
	# Not finished, so not committed.
	run -0 mq-recv "${MQ[@]}" -t t -g g "${G[@]}" -e
	[ "$output" = "$(seq 1 2)" ]
}
