#!/usr/bin/env bats
# mq-offset commit: ids from arguments and stdin, all-or-nothing batches,
# bad input, streaming from a pipe, and the manual-commit pipeline
# mq-recv --commit manual -J | ./load | mq-offset commit surviving a kill.

load helpers

setup() { mq_setup; }
teardown() {
	if [ -n "${PIPE_PID:-}" ]; then
		kill -KILL -- "-$PIPE_PID" 2>/dev/null || true
	fi
	mq_teardown
}

# Two partitions: orders/0 holds offsets 0-4, orders/1 offsets 0-2.
orders() {
	start_store --partitions 2
	mq-send "${MQ[@]}" -t orders -p 0 -q a b c d e
	mq-send "${MQ[@]}" -t orders -p 1 -q f g h
}

@test "ids as arguments: x commits x+1, the highest per partition, prints the positions" {
	broker_only
	orders
	run --separate-stderr -0 mq-offset "${MQ[@]}" commit -g etl orders/0/1 orders/0/3 orders/1/0
	[[ ${lines[0]} =~ ^GROUP\ +TOPIC\ +PARTITION\ +CURRENT-OFFSET$ ]]
	[ "$(awk 'NR > 1 { print $1, $2, $3, $4 }' <<<"$output" | tr '\n' ' ')" = \
	  "etl orders 0 4 etl orders 1 1 " ]
	[ "$(committed etl)" = "orders/0=4 orders/1=1 " ]
	# The ids mq-send prints can be committed as they are.
	id=$(mq-send "${MQ[@]}" -t orders -p 1 i)
	[ "$id" = orders/1/3 ]
	run --separate-stderr -0 mq-offset "${MQ[@]}" commit -g etl "$id" -J
	jq -e '.group == "etl" and .topic == "orders" and .partition == 1 and .current_offset == 4 and .requested_offset == 4' <<<"$output"
}

@test "commits only move forward, unless --force" {
	start_store
	mq-send "${MQ[@]}" -t jobs -q a b c d e
	mq-offset "${MQ[@]}" commit -q -g etl jobs/0/3
	run --separate-stderr -0 mq-offset "${MQ[@]}" commit -g etl jobs/0/1
	[[ $stderr == *"jobs/0: the committed offset stays 4, ahead of 2"* ]]
	[ "$(awk 'NR == 2 { print $4 }' <<<"$output")" = 4 ]
	[ "$(committed etl)" = "jobs/0=4 " ]
	run --separate-stderr -0 mq-offset "${MQ[@]}" commit -g etl --force jobs/0/1
	[ -z "$stderr" ]
	[ "$(committed etl)" = "jobs/0=2 " ]
	# Forward needs nothing special.
	mq-offset "${MQ[@]}" commit -q -g etl jobs/0/4
	[ "$(committed etl)" = "jobs/0=5 " ]
}

@test "ids from stdin: plain ids and the JSON lines of mq-recv -J; blank lines skipped" {
	broker_only
	orders
	mq-recv "${MQ[@]}" -t orders -p 0 -o beginning -n 2 -J > "$T/two.json"
	[ "$(jq -r .id "$T/two.json" | tr '\n' ' ')" = "orders/0/0 orders/0/1 " ]
	run --separate-stderr -0 mq-offset "${MQ[@]}" commit -g etl < "$T/two.json"
	[ "$(committed etl)" = "orders/0=2 orders/1=- " ]
	printf '\norders/0/2\r\n  \n{"topic":"orders","partition":1,"offset":1,"value":"x"}\n' |
		mq-offset "${MQ[@]}" commit -q -g etl
	[ "$(committed etl)" = "orders/0=3 orders/1=2 " ]
	# No ids at all: nothing to do.
	run --separate-stderr -0 mq-offset "${MQ[@]}" commit -g etl < /dev/null
	[ -z "$output" ]
}

@test "a following mq-recv -g starts right after the committed id" {
	broker_only
	orders
	mq-offset "${MQ[@]}" commit -q -g etl orders/0/2 orders/1/0
	run -0 mq-recv "${MQ[@]}" -g etl -t orders -e -J
	[ "$(jq -r .id <<<"$output" | sort | tr '\n' ' ')" = \
	  "orders/0/3 orders/0/4 orders/1/1 orders/1/2 " ]
}

@test "malformed ids: exit 65 naming the line, and nothing of the batch is committed" {
	broker_only
	orders
	mq-offset "${MQ[@]}" commit -q -g etl orders/0/0 orders/1/0
	# Each bad line comes after a good one, in the same batch.
	while IFS='|' read -r bad why; do
		run --separate-stderr -65 mq-offset "${MQ[@]}" commit -g etl \
			<<<"$(printf 'orders/0/3\n%s\norders/1/2\n' "$bad")"
		[[ $stderr == *"line 2: "*"$why"* ]] || { echo "$bad: $stderr"; false; }
		[[ $stderr == *"nothing of this batch was committed"* ]]
		[ -z "$output" ]
		[ "$(committed etl)" = "orders/0=1 orders/1=1 " ]
	done <<'EOF'
bogus|is not a message id
orders/0|is not a message id
orders/x/1|the partition is not a whole number
orders/0/-1|the offset is not a whole number
orders/0/1.5|the offset is not a whole number
orders/0/99999999999999999999|the offset is not a whole number
../x/0/1|invalid topic name
nope/0/1|unknown topic nope
orders/2/0|topic orders has no partition 2 (it has 2)
orders/0/5|orders/0/5 is beyond the end of the partition (its next offset is 5)
orders/1/7|beyond the end
{"value":"x"}|has no "id"
{"id":7}|"id" is not a string
{"id":"orders/0/x"}|the offset is not a whole number
{"topic":"orders","partition":-1,"offset":1}|must be whole numbers
{not json|not a JSON object
{"id":"orders/0/2"} {"id":"orders/0/3"}|not a JSON object
EOF
	# Arguments are one batch as well, numbered as arguments.
	run --separate-stderr -65 mq-offset "${MQ[@]}" commit -g etl orders/0/3 junk
	[[ $stderr == *"argument 2: 'junk' is not a message id"* ]]
	# A regular file is one batch, however long.
	for i in $(seq 1 2000); do echo "orders/0/4"; done > "$T/ids"
	echo "orders/1/3" >> "$T/ids"
	run --separate-stderr -65 mq-offset "${MQ[@]}" commit -g etl < "$T/ids"
	[[ $stderr == *"line 2001: "*"beyond the end"* ]]
	[ "$(committed etl)" = "orders/0=1 orders/1=1 " ]
	# A group never committed to stays unknown.
	run --separate-stderr -65 mq-offset "${MQ[@]}" commit -g fresh <<<"orders/9/0"
	run --separate-stderr -65 mq-offset "${MQ[@]}" groups -g fresh
}

@test "from a pipe, ids are committed at --interval while the pipe stays open" {
	start_store
	mq-send "${MQ[@]}" -t jobs -q a b c d
	mkfifo "$T/fifo"
	mq-offset "${MQ[@]}" commit -g etl --interval 100ms < "$T/fifo" > "$T/out" &
	committer=$!
	exec 7> "$T/fifo"
	echo jobs/0/0 >&7
	wait_for bash -c "[ \"\$(mq-offset ${MQ[*]} groups -g etl -J 2>/dev/null | jq -r 'select(.topic) | .current_offset')\" = 1 ]"
	echo jobs/0/2 >&7
	wait_for bash -c "[ \"\$(mq-offset ${MQ[*]} groups -g etl -J 2>/dev/null | jq -r 'select(.topic) | .current_offset')\" = 3 ]"
	exec 7>&-
	wait "$committer"
	# One heading, then a row per batch.
	[ "$(grep -c CURRENT-OFFSET "$T/out")" -eq 1 ]
	[ "$(awk 'NR > 1 { print $4 }' "$T/out" | tr '\n' ' ')" = "1 3 " ]
}

@test "SIGTERM: what was read is committed, and the exit status is 0" {
	start_store
	mq-send "${MQ[@]}" -t jobs -q a b c d
	mkfifo "$T/fifo"
	mq-offset "${MQ[@]}" commit -q -g etl --interval 1h < "$T/fifo" 2> "$T/err" &
	committer=$!
	exec 7> "$T/fifo"
	# The last line is still being written when the signal comes: it is
	# left out, and the whole lines before it are committed.
	printf 'jobs/0/0\njobs/0/1\n{"id":"jobs/0/' >&7
	sleep 0.3
	kill -TERM "$committer"
	status=0
	wait "$committer" || status=$?
	exec 7>&-
	[ "$status" -eq 0 ]
	[ "$(committed etl)" = "jobs/0=2 " ]
	[[ $(cat "$T/err") == *"the unfinished last line (14 bytes) was left out"* ]]
}

# The load stage of the pipeline: "process" each message (append its
# value to $OUT), then pass its line on to be committed.
make_load() {
	cat > "$T/load" <<'EOF'
#!/usr/bin/env bash
while IFS= read -r line; do
	[[ $line =~ \"value\":\"([^\"]*)\" ]] || exit 1
	printf '%s\n' "${BASH_REMATCH[1]}" >> "$OUT"
	printf '%s\n' "$line"
	sleep 0.005
done
EOF
	chmod +x "$T/load"
}

# run_pipeline_killed SIGNAL: start the pipeline on group etl, let it
# commit something, kill every process in it with SIGNAL, restart it
# until the end and check that nothing was skipped and that only what was
# in flight (processed, not yet committed) was processed twice.
run_pipeline_killed() {
	local sig=$1 n=400 k1 c i expect
	broker_only
	start_store
	seq -f 'm%g' 0 $((n - 1)) | mq-send "${MQ[@]}" -t jobs -q
	# A new group starts at the end by default: start it at the beginning.
	mq-offset "${MQ[@]}" reset -q -g etl -t jobs --to-earliest --execute
	make_load
	export OUT=$T/processed MQ_B=${MQ[1]} LOAD=$T/load
	setsid bash -c 'mq-recv -b "$MQ_B" -g etl -t jobs --commit manual -J |
		"$LOAD" | mq-offset -b "$MQ_B" commit -q -g etl' &
	PIPE_PID=$!
	wait_for bash -c "[ \"\$(mq-offset -b $MQ_B groups -g etl -J 2>/dev/null | jq -r 'select(.topic) | .current_offset')\" -gt 50 ]"
	kill -"$sig" -- "-$PIPE_PID"
	wait "$PIPE_PID" || true
	# The shell may end before the stages do (a committer stopped by
	# SIGTERM commits what it had read): wait for every one of them.
	wait_for bash -c "! kill -0 -- -$PIPE_PID 2>/dev/null"
	PIPE_PID=
	k1=$(wc -l < "$OUT")
	c=$(mq-offset "${MQ[@]}" groups -g etl -J | jq -r 'select(.topic) | .current_offset')
	echo "# killed with SIG$sig: processed $k1, committed $c" >&3
	[ "$c" -gt 0 ] && [ "$c" -le "$k1" ]
	[ "$k1" -lt "$n" ] || skip "the pipeline finished before it was killed"
	# Start again, to the end this time.
	mq-recv "${MQ[@]}" -g etl -t jobs --commit manual -J -e | "$LOAD" |
		mq-offset "${MQ[@]}" commit -q -g etl
	# Run 1 processed m0..m(k1-1); run 2 resumed at the committed offset.
	expect=$( { seq -f 'm%g' 0 $((k1 - 1)); seq -f 'm%g' "$c" $((n - 1)); } )
	diff <(printf '%s\n' "$expect") "$OUT"
	[ "$(committed etl)" = "jobs/0=$n " ]
}

@test "manual-commit pipeline killed (SIGKILL) half way: restarted, nothing skipped" {
	run_pipeline_killed KILL
}

@test "manual-commit pipeline stopped (SIGTERM) half way: restarted, nothing skipped" {
	run_pipeline_killed TERM
}

@test "a commit while the broker is gone exits 69; --interval and ids are checked" {
	run --separate-stderr -69 mq-offset commit -b "unix:$T/nobody.sock" -g etl jobs/0/0
	run --separate-stderr -64 mq-offset commit -g etl --interval soon
	[[ $stderr == *"--interval soon"* ]]
	run --separate-stderr -64 mq-offset commit -g etl -t jobs
	[[ $stderr == *"-t does not apply to commit"* ]]
}
