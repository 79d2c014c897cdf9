#!/usr/bin/env bats
# mq-send: options, input framing, keys, headers, JSON lines, output and
# exit codes. (Modes, retries and failures: 110-send-modes.bats.)

load helpers

setup() { mq_setup; }
teardown() { mq_teardown; }

# recv_json TOPIC: every message of TOPIC as JSON lines.
recv_json() {
	mq-recv "${MQ[@]}" -t "$1" -o beginning -e -J
}

# log_count TOPIC STRING: how many times STRING occurs in the log files
# of TOPIC (records are stored as sent, so this counts messages).
log_count() {
	cat "$DATA"/topics/"$1"/*/*.log | grep -aoF -- "$2" | wc -l
}

@test "mq-send --help prints usage on stdout and exits 0" {
	run --separate-stderr -0 mq-send --help
	[[ $output == *"usage: mq-send"* ]]
	[[ $output == *"--oneway"* ]]
	[ -z "$stderr" ]
}

@test "mq-send --version prints the version" {
	run --separate-stderr -0 mq-send --version
	[[ $output =~ ^mq-send\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "usage errors exit 64, name the bad value, and send nothing" {
	run --separate-stderr -64 mq-send
	[[ $stderr == *"-t"* ]]
	run --separate-stderr -64 mq-send -t t --no-such-option
	run --separate-stderr -64 mq-send -t ../x
	[[ $stderr == *"../x"* ]]
	run --separate-stderr -64 mq-send -t t -k a -K :
	[[ $stderr == *"-k"* && $stderr == *"-K"* ]]
	run --separate-stderr -64 mq-send -t t -J -K :
	run --separate-stderr -64 mq-send -t t -K ''
	run --separate-stderr -64 mq-send -t t --sync --oneway
	[[ $stderr == *"cannot use --oneway with --sync"* ]]
	run --separate-stderr -64 mq-send -t t --linger 5
	[[ $stderr == *"--linger"* ]]
	run --separate-stderr -64 mq-send -t t --sync --batch-bytes 1K
	run --separate-stderr -64 mq-send -t t --oneway --inflight 3
	run --separate-stderr -64 mq-send -t t --oneway --retries 3
	run --separate-stderr -64 mq-send -t t --async --inflight 0
	[[ $stderr == *"--inflight 0"* ]]
	run --separate-stderr -64 mq-send -t t --retries -1
	run --separate-stderr -64 mq-send -t t --async --linger 5x
	[[ $stderr == *"5x"* ]]
	run --separate-stderr -64 mq-send -t t -H novalue
	[[ $stderr == *"novalue"* ]]
	run --separate-stderr -64 mq-send -t t -H =v
	run --separate-stderr -64 mq-send -t t -p -1
	run --separate-stderr -64 mq-send -t t -b unix:/x -d /y
	[ -z "$output" ]
}

@test "a broker that cannot be reached gives 69" {
	run --separate-stderr -69 mq-send -b "unix:$T/nobody.sock" -t t hello
	[[ $stderr == *"$T/nobody.sock"* ]]
	[ -z "$output" ]
	MQ_BROKER="unix:$T/nobody.sock" run --separate-stderr -69 mq-send -t t x
}

@test "each line of stdin is a message; ids are printed in input order" {
	start_store
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t < <(printf 'a\nb\nc\n')
	[ "$output" = "$(printf 't/0/0\nt/0/1\nt/0/2')" ]
	[ -z "$stderr" ]
	# A last line without a newline is a message; an empty line is an
	# empty message.
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t < <(printf '\nlast')
	[ "$output" = "$(printf 't/0/3\nt/0/4')" ]
	# No input, no message.
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t < /dev/null
	[ -z "$output" ]
}

@test "MESSAGE arguments are sent instead of stdin" {
	start_store
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t one "two words" < <(echo ignored)
	[ "$output" = "$(printf 't/0/0\nt/0/1')" ]
	[ "$(log_count t ignored)" -eq 0 ]
	[ "$(log_count t 'two words')" -eq 1 ]
}

@test "-b defaults to \$MQ_BROKER" {
	broker_only
	start_store
	run --separate-stderr -0 mq-send -t t hello
	[ "$output" = t/0/0 ]
}

@test "-q prints no ids" {
	start_store
	run --separate-stderr -0 mq-send "${MQ[@]}" -q -t t a b c
	[ -z "$output" ]
	[ -z "$stderr" ]
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t d
	[ "$output" = t/0/3 ]
}

@test "-0 splits messages at NUL bytes; newlines stay in the message" {
	start_store
	run --separate-stderr -0 mq-send "${MQ[@]}" -0 -t t < <(printf 'a\nb\0c\0')
	[ "$output" = "$(printf 't/0/0\nt/0/1')" ]
	run -0 recv_json t
	[ "$(jq -r .value <<< "${lines[0]}")" = "$(printf 'a\nb')" ]
	[ "$(jq -r .value <<< "${lines[1]}")" = c ]
}

@test "-K splits key and value at the first delimiter; keys land in a stable partition" {
	start_store --partitions 4
	topic t 4
	input=$(for i in $(seq 1 40); do echo "key$((i % 7))::value$i::x"; done)
	run --separate-stderr -0 mq-send "${MQ[@]}" -K :: -t t <<< "$input"
	[ "${#lines[@]}" -eq 40 ]
	# The same key always went to the same partition...
	paste -d ' ' <(cut -d: -f1 <<< "$input") <(cut -d/ -f2 <<< "$output") |
		sort -u > "$T/first"
	[ "$(cut -d' ' -f1 "$T/first" | sort | uniq -d)" = "" ]
	# ...several partitions were used...
	[ "$(cut -d' ' -f2 "$T/first" | sort -u | wc -l)" -gt 1 ]
	# ...and it is the same partition in async mode, for a new topic the
	# first message creates, and for -k.
	run --separate-stderr -0 mq-send "${MQ[@]}" -K :: -t t --async <<< "$input"
	paste -d ' ' <(cut -d: -f1 <<< "$input") <(cut -d/ -f2 <<< "$output") |
		sort -u | cmp - "$T/first"
	if [ "${MQ_TEST_STORE:-broker}" = broker ]; then
		run --separate-stderr -0 mq-send "${MQ[@]}" -K :: -t new --async <<< "$input"
		paste -d ' ' <(cut -d: -f1 <<< "$input") <(cut -d/ -f2 <<< "$output") |
			sort -u | cmp - "$T/first"
	fi
	part=$(grep '^key3 ' "$T/first" | cut -d' ' -f2)
	run --separate-stderr -0 mq-send "${MQ[@]}" -k key3 -t t a b c
	[ "$(cut -d/ -f2 <<< "$output" | sort -u)" = "$part" ]
}

@test "-K: the value is what follows the delimiter; a line without it has no key" {
	start_store
	run --separate-stderr -0 mq-send "${MQ[@]}" -K , -t t < <(printf 'k1,v1,more\nnokey\n,emptykey\n')
	run -0 recv_json t
	[ "$(jq -c '[.key, .value]' <<< "${lines[0]}")" = '["k1","v1,more"]' ]
	[ "$(jq -c '[.key, .value]' <<< "${lines[1]}")" = '[null,"nokey"]' ]
	[ "$(jq -c '[.key, .value]' <<< "${lines[2]}")" = '["","emptykey"]' ]
}

@test "keyless messages are spread evenly over the partitions" {
	start_store --partitions 4
	topic t 4
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t < <(seq 1 40)
	[ "$(cut -d/ -f2 <<< "$output" | sort | uniq -c | awk '{print $1}' | sort -u)" = 10 ]
	# async spreads whole batches: every partition gets some.
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t --async --linger 0 --batch-bytes 1 < <(seq 1 40)
	[ "$(cut -d/ -f2 <<< "$output" | sort -u | wc -l)" -eq 4 ]
}

@test "-p sends everything to one partition; a partition the topic lacks is an error" {
	start_store --partitions 3
	topic t 3
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t -p 2 -k anykey a b c
	[ "$output" = "$(printf 't/2/0\nt/2/1\nt/2/2')" ]
	run --separate-stderr -64 mq-send "${MQ[@]}" -t t -p 3 x
	[[ $stderr == *"-p 3"* && $stderr == *"3 partitions"* ]]
}

@test "-H headers reach every message; values may be empty or contain =" {
	start_store
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t -H source=cron -H empty= -H 'eq=a=b' one two
	run -0 recv_json t
	[ "${#lines[@]}" -eq 2 ]
	for l in "${lines[@]}"; do
		[ "$(jq -c .headers <<< "$l")" = '{"source":"cron","empty":"","eq":"a=b"}' ]
	done
}

@test "-J reads key, value, headers and partition; prints JSON results" {
	start_store --partitions 2
	topic t 2
	run --separate-stderr -0 mq-send "${MQ[@]}" -J -t t < <(cat <<-'EOF'
	{"key":"k","value":"v1","headers":{"h":"1"},"partition":1}
	{"value":"v2"}

	{"value":null,"key":"tomb","partition":0}
	EOF
	)
	[ "${#lines[@]}" -eq 3 ]
	jq -e 'select(.line == 1) | .id == "t/1/0" and .topic == "t" and
	       .partition == 1 and .offset == 0 and .status == "ok"' <<< "${lines[0]}"
	jq -e '.line == 2 and .status == "ok"' <<< "${lines[1]}"
	jq -e '.line == 4 and .id == "t/0/\(.offset)" and .partition == 0' <<< "${lines[2]}"
}

@test "-J: a malformed line is reported with its number (65); the others are sent" {
	start_store
	run --separate-stderr -65 mq-send "${MQ[@]}" -J -t t < <(printf '%s\n' \
		'{"value":"a"}' 'not json' '{"key":"k"}' '{"value":"d"}' '[1]' \
		'{"value":"f"} {"value":"g"}')
	[ "${#lines[@]}" -eq 6 ]
	jq -e '.status == "ok"' <<< "${lines[0]}"
	jq -e '.line == 2 and .status == "invalid" and (.reason | test("JSON"))' <<< "${lines[1]}"
	jq -e '.line == 3 and .status == "invalid" and (.reason | test("value"))' <<< "${lines[2]}"
	jq -e '.line == 4 and .status == "ok" and .offset == 1' <<< "${lines[3]}"
	[[ $stderr == *"line 2: malformed input"* ]]
	[[ $stderr == *"line 3: malformed input"* ]]
	[[ $stderr == *"line 5: malformed input"* ]]
	# Two objects on one line are not one message.
	jq -e '.line == 6 and .status == "invalid"' <<< "${lines[5]}"
	# With -q, nothing on stdout; still 65.
	run --separate-stderr -65 mq-send "${MQ[@]}" -J -q -t t < <(printf '%s\n' x '{"value":"e"}')
	[ -z "$output" ]
	[[ $stderr == *"line 1: malformed input"* ]]
}

@test "--stop-on-error stops reading at the first malformed line" {
	start_store
	run --separate-stderr -65 mq-send "${MQ[@]}" -J --stop-on-error -t t < <(printf '%s\n' \
		'{"value":"a"}' 'bad' '{"value":"c"}')
	[ "${#lines[@]}" -eq 2 ]
	jq -e '.line == 1 and .id == "t/0/0"' <<< "${lines[0]}"
	jq -e '.line == 2 and .status == "invalid"' <<< "${lines[1]}"
	[[ $stderr == *"line 2"* ]]
	run --separate-stderr -0 mq-send "${MQ[@]}" -t t next
	[ "$output" = t/0/1 ]
}

@test "mq-recv -J | mq-send -J copies keys, values (non-UTF-8 too) and headers" {
	start_store --partitions 2
	printf 'k1\tplain text\nk2\t\xff\xfe binary \x01\nk3\tcaf\xc3\xa9\n' > "$T/in"
	mq-send "${MQ[@]}" -K $'\t' -H 'trace=abc' -H 'bin=' -t src < "$T/in" > /dev/null
	printf '{"key_b64":"/w==","value":"v","headers_b64":{"raw":"AP8="}}\n' |
		mq-send "${MQ[@]}" -J -t src > /dev/null
	recv_json src > "$T/src.json"
	run --separate-stderr -0 mq-send "${MQ[@]}" -J -t copy < "$T/src.json"
	[ "${#lines[@]}" -eq 4 ]
	recv_json copy > "$T/copy.json"
	# Everything but the topic (and the ids and timestamps) is the same.
	norm() { jq -S -c '{partition, offset, key, key_b64, value, value_b64, headers, headers_b64, timestamp}' "$1" | sort; }
	[ "$(norm "$T/src.json")" = "$(norm "$T/copy.json")" ]
	grep -q value_b64 "$T/copy.json"
	grep -q key_b64 "$T/copy.json"
	grep -q headers_b64 "$T/copy.json"
}

@test "a message larger than the broker's limit fails alone with 75" {
	broker_only
	start_store --max-message-bytes 1K
	big=$(head -c 2000 /dev/zero | tr '\0' x)
	for mode in --sync --async; do
		run --separate-stderr -75 mq-send "${MQ[@]}" $mode -t "t${mode#--}" < <(printf 'a\n%s\nc\n' "$big")
		[ "$output" = "$(printf 't%s/0/0\nt%s/0/1' "${mode#--}" "${mode#--}")" ]
		[[ $stderr == *"line 2: not sent: message of 2000 bytes exceeds the broker's limit of 1024 bytes"* ]]
	done
	# A line far longer than any message is skipped as it streams by.
	run --separate-stderr -75 mq-send "${MQ[@]}" -J -t j < <(
		echo '{"value":"a"}'; head -c 20000000 /dev/zero | tr '\0' y; echo; echo '{"value":"c"}')
	jq -e '.line == 2 and .status == "failed" and .error == "too-large"' <<< "${lines[1]}"
	jq -e '.line == 3 and .offset == 1' <<< "${lines[2]}"
	[[ $stderr == *"line 2: not sent: line of 20000000 bytes exceeds"* ]]
}

@test "an unknown topic with auto-creation off fails with 75 and the reason" {
	broker_only
	start_store --no-auto-create
	run --separate-stderr -75 mq-send "${MQ[@]}" -t nope a b
	[ -z "$output" ]
	[[ $stderr == *"unknown topic nope"* ]]
	run --separate-stderr -75 mq-send "${MQ[@]}" -t nope -K : --async k:a k:b
	[[ $stderr == *"unknown topic nope"* ]]
	# Oneway hears no reply, but the topic is looked up first.
	run --separate-stderr -75 mq-send "${MQ[@]}" -t nope --oneway a b
	[[ $stderr == *"topic nope does not exist and was not created"* ]]
}

@test "-J with -H: the headers are added to lines that carry none" {
	start_store
	mq-send "${MQ[@]}" -t t -J -H z=1 -q '{"value":"a"}' '{"value":"b","headers":{"y":"2"}}'
	run -0 mq-recv "${MQ[@]}" -t t -e -J
	[ "$(jq -c .headers <<< "${lines[0]}")" = '{"z":"1"}' ]
	[ "$(jq -c .headers <<< "${lines[1]}")" = '{"y":"2","z":"1"}' ]
}

@test "started with stdout closed: the messages are sent, nothing else is written to" {
	start_store
	run -0 bash -c 'printf "a\nb\n" | mq-send "$@" -t t >&-' _ "${MQ[@]}"
	run -0 mq-recv "${MQ[@]}" -t t -e
	[ "$output" = "$(printf 'a\nb')" ]
	if [ "${MQ_TEST_STORE:-broker}" = dir ]; then
		# The ids did not land in the directory's lock file.
		! grep -q 't/0/' "$DATA/lock"
	fi
}

@test "timestamps: now by default, the JSON timestamp when given" {
	start_store
	before=$(($(date +%s%3N) - 1))
	mq-send "${MQ[@]}" -t t now > /dev/null
	after=$(($(date +%s%3N) + 1))
	printf '{"value":"old","timestamp":1000}\n' | mq-send "${MQ[@]}" -J -t t > /dev/null
	run -0 recv_json t
	ts=$(jq .timestamp <<< "${lines[0]}")
	[ "$ts" -ge "$before" ] && [ "$ts" -le "$after" ]
	[ "$(jq .timestamp <<< "${lines[1]}")" -eq 1000 ]
}

@test "memory stays bounded however big the input" {
	[[ ${MQ_BUILD:-} != *san* ]] || skip "address space limits do not suit sanitizers"
	start_store --flush async
	# 400 MB of input (4 million messages) in 200 MB of address space.
	line=$(printf '%099d' 0)
	run --separate-stderr bash -c 'ulimit -v 200000; yes "$0" | head -c 400000000 |
		mq-send "$@" --async -q -t big' "$line" "${MQ[@]}"
	[ "$status" -eq 0 ]
	run --separate-stderr -0 mq-send "${MQ[@]}" -t big last
	[ "$output" = big/0/4000000 ]
}

@test "the man page passes mandoc's linter and documents every option" {
	root=${MQ_ROOT:-$BATS_TEST_DIRNAME/..}
	run -0 mandoc -Tlint -Wwarning "$root/man/mq-send.1"
	[ -z "$output" ]
	page=$(mandoc -Tascii "$root/man/mq-send.1" | sed $'s/.\b//g')
	for opt in $(mq-send --help | grep -Eo -- '--[a-z-]+' | sort -u); do
		grep -q -- "$opt" <<< "$page" || { echo "$opt undocumented"; false; }
	done
	examples=$(sed -n '/^EXAMPLES/,/^SEE ALSO/p' <<< "$page")
	[[ $examples == *"tail -n 0 -F"* ]]            # logs
	[[ $examples == *"--retries"* && $examples == *"* * *"* ]]  # cron
	[[ $examples == *".csv"* && $examples == *"-K ,"* ]]        # CSV keys
	[[ $examples == *"mq-recv"*"-J"*"mq-send"*"-J"* ]]        # a copy
}

@test "bash completion offers every option and the topic names" {
	root=${MQ_ROOT:-$BATS_TEST_DIRNAME/..}
	start_store
	mq-send "${MQ[@]}" -t orders -q a
	source "$root/completions/bash/mq-send"
	comp() {
		COMP_LINE=$1
		COMP_POINT=${#1}
		read -ra COMP_WORDS <<< "$1"
		[[ $1 == *' ' ]] && COMP_WORDS+=("")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMPREPLY=()
		_mq_send
		echo "${COMPREPLY[*]}"
	}
	offered=" $(comp 'mq-send --') "
	for opt in $(mq-send --help | grep -Eo -- '--[a-z-]+' | sort -u); do
		[[ $offered == *" $opt "* ]] || { echo "$opt not offered"; false; }
	done
	[ "$(comp 'mq-send --as')" = --async ]
	[ "$(comp "mq-send ${MQ[*]} -t or")" = orders ]
	[ "$(comp 'mq-send -t orders --linger ')" = "" ]
}

@test "zsh completion parses and offers every option" {
	command -v zsh > /dev/null || skip "zsh is not installed"
	f=${MQ_ROOT:-$BATS_TEST_DIRNAME/..}/completions/zsh/_mq-send
	run -0 zsh -n "$f"
	for opt in $(mq-send --help | grep -Eo -- '--[a-z-]+' | sort -u); do
		grep -q -- "$opt" "$f" || { echo "$opt missing"; false; }
	done
}
