#!/usr/bin/env bats
# mq-recv without a group: options, reading positions, output formats,
# exit codes.

load helpers

setup() {
	mq_setup
	NOWHERE=(-b "unix:$T/nothing-listens-here.sock")
}
teardown() { mq_teardown; }

@test "mq-recv --help prints usage on stdout and exits 0" {
	run --separate-stderr -0 mq-recv --help
	[[ $output == *"usage: mq-recv"* ]]
	[[ $output == *"--commit"* ]]
	[[ $output == *"--exec"* ]]
	[ -z "$stderr" ]
}

@test "mq-recv --version prints the version" {
	run --separate-stderr -0 mq-recv --version
	[[ $output =~ ^mq-recv\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "usage errors exit 64 before connecting, naming what is wrong" {
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}"
	[[ $stderr == *"no topic"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -g g -p 0
	[[ $stderr == *"-p cannot be used with -g"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -g g -o end
	[[ $stderr == *"-o cannot be used with -g"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a --commit after
	[[ $stderr == *"need -g"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -g g --commit sometimes
	[[ $stderr == *"--commit sometimes"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a --exec cat -J
	[[ $stderr == *"--exec cannot be used with"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a --retries 2
	[[ $stderr == *"need --exec"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -J -0
	[[ $stderr == *"choose one of"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -o yesterday
	[[ $stderr == *"-o yesterday"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -o @noon
	[[ $stderr == *"-o @noon"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a --exec cat --backoff 5s:1s
	[[ $stderr == *"--backoff 5s:1s"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -n -3
	[[ $stderr == *"-n -3"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t ../etc
	[[ $stderr == *"../etc"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -t a
	[[ $stderr == *"given twice"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a stray
	[[ $stderr == *"stray"* ]]
	run --separate-stderr -64 mq-recv -b "unix:$T/x" -d "$T/d" -t a
	run --separate-stderr -64 mq-recv --no-such-option
	[ -z "$output" ]
}

@test "invalid -f tokens are rejected before connecting" {
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -f 'x=%x\n'
	[[ $stderr == *"'%x'"* ]]
	[[ $stderr == *"position 3"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -f '%v\q'
	[[ $stderr == *"'\\q'"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -f '%v%'
	[[ $stderr == *"lone"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -f '%h{trace'
	[[ $stderr == *"unterminated"* ]]
	run --separate-stderr -64 mq-recv "${NOWHERE[@]}" -t a -f '%h{}'
	[[ $stderr == *"empty header name"* ]]
}

@test "an unreachable broker exits 69" {
	broker_only
	run --separate-stderr -69 mq-recv "${NOWHERE[@]}" -t a -e
	[[ $stderr == *"nothing-listens-here.sock"* ]]
}

@test "an unknown topic is an error, not an empty read" {
	start_store
	seq 1 3 | send other
	run --separate-stderr mq-recv "${MQ[@]}" -t nosuch -e
	[ "$status" -eq 75 ]
	[[ $stderr == *"nosuch"* ]]
	# A group member too, with or without -e (it must not wait forever).
	run --separate-stderr timeout 10 mq-recv "${MQ[@]}" -t nosuch -g g -e
	[ "$status" -eq 75 ]
	[[ $stderr == *"topic nosuch: no such topic"* ]]
	run --separate-stderr timeout 10 mq-recv "${MQ[@]}" -t other -t nosuch -g g
	[ "$status" -eq 75 ]
	[[ $stderr == *"topic nosuch: no such topic"* ]]
}

@test "-e reads every partition to its end; -n stops after exactly N" {
	start_store --partitions 3
	seq 1 30 | send t
	run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -e
	[ "$(sort -n <<< "$output")" = "$(seq 1 30)" ]
	run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -e -n 7
	[ "${#lines[@]}" -eq 7 ]
	run --separate-stderr -0 mq-recv "${MQ[@]}" -t t -n 0
	[ -z "$output" ]
	# -n alone (no -e) also stops, without waiting for more.
	run --separate-stderr -0 timeout 10 mq-recv "${MQ[@]}" -t t -n 30
	[ "${#lines[@]}" -eq 30 ]
}

@test "several topics are read together" {
	start_store
	seq 1 3 | send a
	seq 4 6 | send b
	run --separate-stderr -0 mq-recv "${MQ[@]}" -t a -t b -e
	[ "$(sort -n <<< "$output")" = "$(seq 1 6)" ]
}

@test "-p and -o choose where to read: beginning, end, N, -N" {
	start_store
	seq 0 9 | send t -p 0
	run -0 mq-recv "${MQ[@]}" -t t -p 0 -o 7 -e
	[ "$output" = "$(seq 7 9)" ]
	run -0 mq-recv "${MQ[@]}" -t t -p 0 -o -2 -e
	[ "$output" = "$(seq 8 9)" ]
	run -0 mq-recv "${MQ[@]}" -t t -o end -e
	[ -z "$output" ]
	run -0 mq-recv "${MQ[@]}" -t t -o beginning -e -n 2
	[ "$output" = "$(seq 0 1)" ]
	# Past either end: clamped to what the partition holds.
	run -0 mq-recv "${MQ[@]}" -t t -o 99 -e
	[ -z "$output" ]
	run -0 mq-recv "${MQ[@]}" -t t -o -99 -e
	[ "$output" = "$(seq 0 9)" ]
	run --separate-stderr -64 mq-recv "${MQ[@]}" -t t -p 5 -e
	[[ $stderr == *"-p 5"* ]]
}

@test "-o @TIME starts at the first message at or after the time" {
	start_store
	seq 1 3 | send t
	sleep 0.05
	local t0
	t0=$(date +%s%3N)
	sleep 0.05
	seq 4 6 | send t
	run -0 mq-recv "${MQ[@]}" -t t -o "@$t0" -e
	[ "$output" = "$(seq 4 6)" ]
	run -0 mq-recv "${MQ[@]}" -t t -o "@$(date -u -d @$((t0 / 1000 - 3600)) +%Y-%m-%dT%H:%M:%SZ)" -e
	[ "$output" = "$(seq 1 6)" ]
	run -0 mq-recv "${MQ[@]}" -t t -o @-1h -e
	[ "$output" = "$(seq 1 6)" ]
	run -0 mq-recv "${MQ[@]}" -t t -o @2999-01-01 -e
	[ -z "$output" ]
}

@test "-f tokens and escapes" {
	start_store
	send t -p 0 -k K1 -H trace=abc -H n=2 <<< "hello"
	run -0 mq-recv "${MQ[@]}" -t t -e \
		-f '%t|%p|%o|%i|%k|%K|%v|%V|%h|%h{n}|%h{none}|100%%\t.\n'
	[ "$output" = "t|0|0|t/0/0|K1|2|hello|5|trace=abc,n=2|2||100%	." ]
	run -0 mq-recv "${MQ[@]}" -t t -e -f '%T\n'
	[[ $output =~ ^[0-9]{13}$ ]]
	# A null key has length -1; \0 writes a NUL byte.
	send t -p 0 <<< "nokey"
	mq-recv "${MQ[@]}" -t t -o 1 -e -f '[%k]%K\0' > "$T/out"
	[ "$(od -An -c "$T/out" | tr -s ' ')" = "$(printf '[]-1\0' | od -An -c | tr -s ' ')" ]
}

@test "-0 ends values with NUL; -K prints the key first" {
	start_store
	send t -p 0 -k k1 <<< "one"
	send t -p 0 <<< "two"
	mq-recv "${MQ[@]}" -t t -e -0 > "$T/out"
	[ "$(od -An -c "$T/out" | tr -s ' ')" = "$(printf 'one\0two\0' | od -An -c | tr -s ' ')" ]
	run -0 mq-recv "${MQ[@]}" -t t -e -K ': '
	[ "${lines[0]}" = "k1: one" ]
	[ "${lines[1]}" = ": two" ]
}

@test "-J prints one object per message that mq-send -J takes back" {
	start_store
	send t -p 0 -k key-1 -H h=v <<< "plain text"
	echo '{"key":"k2","value_b64":"AP8Aeg==","headers":{"a":"b"}}' | send t -p 0 -J
	run -0 mq-recv "${MQ[@]}" -t t -e -J
	[ "${#lines[@]}" -eq 2 ]
	[ "$(jq -r '.id' <<< "${lines[0]}")" = "t/0/0" ]
	[ "$(jq -r '.value' <<< "${lines[0]}")" = "plain text" ]
	[ "$(jq -r '.key' <<< "${lines[0]}")" = "key-1" ]
	[ "$(jq -r '.headers.h' <<< "${lines[0]}")" = "v" ]
	[ "$(jq -r '.value_b64' <<< "${lines[1]}")" = "AP8Aeg==" ]
	# Round trip into another topic: the same keys, values, headers and
	# timestamps.
	mq-recv "${MQ[@]}" -t t -e -J | send copy -J
	strip='{key, key_b64, value, value_b64, headers, timestamp, partition}'
	diff <(mq-recv "${MQ[@]}" -t t -e -J | jq -cS "$strip") \
	     <(mq-recv "${MQ[@]}" -t copy -e -J | jq -cS "$strip")
}

@test "without -e it follows the topic until SIGTERM, then exits 0" {
	start_store
	send t <<< "first"
	mq-recv "${MQ[@]}" -t t > "$T/out" 2> "$T/err" 3>&- &
	local pid=$!
	wait_for grep -qx first "$T/out"
	send t <<< "second"
	wait_for grep -qx second "$T/out"
	kill -TERM "$pid"
	local st=0
	wait "$pid" || st=$?
	[ "$st" -eq 0 ]
	[ "$(cat "$T/out")" = "$(printf 'first\nsecond')" ]
}

@test "a closed stdout stops it quietly with status 0" {
	start_store
	seq 1 50000 | send t --async
	run -0 bash -c 'mq-recv "$@" -t t -e | head -n 1; echo "status ${PIPESTATUS[0]}"' _ "${MQ[@]}"
	[ "${lines[0]}" = 1 ]
	[ "${lines[1]}" = "status 0" ]
}
