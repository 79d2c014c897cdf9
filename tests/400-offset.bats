#!/usr/bin/env bats
# mq-offset: options, status, topics and groups listings (columns, JSON
# lines, Prometheus), --max-lag, retention, the man page and completions.
# Commits are in 410-offset-commit.bats, resets in 420-offset-reset.bats.

load helpers

setup() { mq_setup; }
teardown() { mq_teardown; }

ROOT=${MQ_ROOT:-$BATS_TEST_DIRNAME/..}

# The rows of `mq-offset groups -J` (not the per-group summaries) as
# "topic/partition=current lag" words.
group_rows() {
	mq-offset "${MQ[@]}" groups -J "$@" |
		jq -r 'select(.topic) | "\(.topic)/\(.partition)=\(.current_offset) \(.lag)"'
}

@test "--help and SUBCOMMAND --help print usage on stdout; --version" {
	run --separate-stderr -0 mq-offset --help
	[ -z "$stderr" ]
	for s in status topics groups commit reset; do
		[[ $output == *"mq-offset $s"* ]]
	done
	[[ $output == *"--prometheus"* ]]
	run --separate-stderr -0 mq-offset reset --help
	[[ $output == "usage: mq-offset reset"* ]]
	[[ $output == *"--to-datetime"* && $output == *"--execute"* ]]
	[[ $output != *"mq-offset groups"* ]]
	run --separate-stderr -0 mq-offset groups -h
	[[ $output == *"--max-lag"* ]]
	run --separate-stderr -0 mq-offset --version
	[[ $output =~ ^mq-offset\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "usage errors exit 64 with a message naming the problem" {
	run --separate-stderr -64 mq-offset
	[[ $stderr == *"usage: mq-offset"* ]]
	run --separate-stderr -64 mq-offset frobnicate
	[[ $stderr == *"unknown subcommand 'frobnicate'"* ]]
	run --separate-stderr -64 mq-offset topics --max-lag 5
	[[ $stderr == *"--max-lag does not apply to topics"* ]]
	run --separate-stderr -64 mq-offset commit --prometheus -g g
	[[ $stderr == *"--prometheus does not apply to commit"* ]]
	run --separate-stderr -64 mq-offset groups -J --prometheus
	[[ $stderr == *"choose one"* ]]
	run --separate-stderr -64 mq-offset groups --max-lag lots
	[[ $stderr == *"--max-lag lots"* ]]
	run --separate-stderr -64 mq-offset groups --max-lag -1
	[[ $stderr == *"--max-lag -1"* ]]
	run --separate-stderr -64 mq-offset topics stray
	[[ $stderr == *"unexpected argument 'stray'"* ]]
	run --separate-stderr -64 mq-offset commit orders/0/1
	[[ $stderr == *"needs -g GROUP"* ]]
	run --separate-stderr -64 mq-offset groups -g ../etc
	[[ $stderr == *"-g ../etc"* ]]
	run --separate-stderr -64 mq-offset topics -t 'a/b'
	[[ $stderr == *"-t a/b"* ]]
	run --separate-stderr -64 mq-offset topics -t orders:1
	[[ $stderr == *"only be chosen with reset"* ]]
	run --separate-stderr -64 mq-offset status -b "unix:$MQ_SOCK" -d "$DATA"
	[[ $stderr == *"-b and -d"* ]]
	[ -z "$output" ]
}

@test "status: key: value lines and exit 0 when the broker answers" {
	broker_only
	start_broker --flush async
	run --separate-stderr -0 mq-offset status -b "unix:$MQ_SOCK"
	[[ $output == *"version: "* ]]
	grep -qx "pid: $BROKER_PID" <<<"$output"
	grep -qx "flush: async" <<<"$output"
	grep -qx "data-dir: $DATA" <<<"$output"
	grep -qx "endpoint: unix:$MQ_SOCK" <<<"$output"
	grep -Eq '^uptime: [0-9]' <<<"$output"
	grep -Eq '^data-bytes: [0-9]+$' <<<"$output"
	# MQ_BROKER (set by mq_setup) is the default.
	run -0 mq-offset status -q
	[ -z "$output" ]
	run -0 mq-offset status -J
	jq -e --argjson pid "$BROKER_PID" \
		'.pid == $pid and .flush == "async" and .topics == 0 and (.uptime_ms | type) == "number"' <<<"$output"
	run -0 mq-offset status --prometheus
	grep -qx 'mq_up 1' <<<"$output"
	grep -qx 'mq_info{version="[0-9.]*",flush="async"} 1' <<<"$output"
	grep -qx '# TYPE mq_uptime_seconds gauge' <<<"$output"
}

@test "status: exit 69 when the broker cannot be reached, also as a readiness check" {
	run --separate-stderr -69 mq-offset status -b "unix:$T/nobody.sock"
	[[ $stderr == *"$T/nobody.sock"* ]]
	[ -z "$output" ]
	run --separate-stderr -69 mq-offset status -q -b "unix:$T/nobody.sock"
	[ -z "$output" ]
	# A scrape says "down" instead of going stale.
	run --separate-stderr -69 mq-offset status --prometheus -b "unix:$T/nobody.sock"
	grep -qx 'mq_up 0' <<<"$output"
	grep -qx '# TYPE mq_up gauge' <<<"$output"
	run --separate-stderr -69 mq-offset topics -b "unix:$T/nobody.sock"
	run --separate-stderr -69 mq-offset groups -J -b "unix:$T/nobody.sock"
}

@test "topics: offsets, counts and timestamps match what was produced; JSON matches the table" {
	broker_only
	start_store --partitions 3
	mq-send "${MQ[@]}" -t orders -p 0 -q a b c
	mq-send "${MQ[@]}" -t orders -p 1 -q d e
	mq-send "${MQ[@]}" -t audit -p 0 -q x
	run --separate-stderr -0 mq-offset "${MQ[@]}" topics
	[[ ${lines[0]} =~ ^TOPIC\ +PARTITION\ +START-OFFSET\ +END-OFFSET\ +MESSAGES\ +BYTES\ +OLDEST-TIMESTAMP\ +NEWEST-TIMESTAMP$ ]]
	table=$output
	# Sorted by topic then partition; three rows per topic.
	[ "$(awk 'NR > 1 { print $1 "/" $2 }' <<<"$table" | tr '\n' ' ')" = \
	  "audit/0 audit/1 audit/2 orders/0 orders/1 orders/2 " ]
	[ "$(awk '$1 == "orders" && $2 == 0 { print $3, $4, $5 }' <<<"$table")" = "0 3 3" ]
	[ "$(awk '$1 == "orders" && $2 == 1 { print $3, $4, $5 }' <<<"$table")" = "0 2 2" ]
	[ "$(awk '$1 == "orders" && $2 == 2 { print $3, $4, $5, $6, $7, $8 }' <<<"$table")" = "0 0 0 0 - -" ]
	awk '$1 == "orders" && $2 == 0 { exit !($6 > 0) }' <<<"$table"
	awk '$1 == "orders" && $2 == 0 { print $7; print $8 }' <<<"$table" |
		grep -Ecx '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z' | grep -qx 2

	run --separate-stderr -0 mq-offset "${MQ[@]}" topics -J
	json=$output
	jq -e . <<<"$json" >/dev/null
	[ "$(jq -r '[.topic, .partition, .start_offset, .end_offset, .messages, .bytes] | join(" ")' <<<"$json")" = \
	  "$(awk 'NR > 1 { print $1, $2, $3, $4, $5, $6 }' <<<"$table")" ]
	jq_all 'select(.topic == "orders" and .partition == 0) |
		.oldest_timestamp <= .newest_timestamp and .oldest_timestamp > 1600000000000' <<<"$json"
	jq_all 'select(.topic == "orders" and .partition == 2) |
		.oldest_timestamp == null and .newest_timestamp == null' <<<"$json"
	# The table's timestamps are the JSON ones, in UTC.
	ms=$(jq -r 'select(.topic == "orders" and .partition == 0) | .oldest_timestamp' <<<"$json")
	want="$(date -u -d "@$((ms / 1000))" +%Y-%m-%dT%H:%M:%S).$(printf %03d $((ms % 1000)))Z"
	[ "$(awk '$1 == "orders" && $2 == 0 { print $7 }' <<<"$table")" = "$want" ]

	run --separate-stderr -0 mq-offset "${MQ[@]}" topics -t orders -J
	[ "$(jq -r .topic <<<"$output" | sort -u)" = orders ]
	run --separate-stderr -65 mq-offset "${MQ[@]}" topics -t nope
	[[ $stderr == *"unknown topic nope"* ]]
}

@test "groups: offsets and lag match what was consumed; JSON matches the table; a total per group" {
	broker_only
	start_store --partitions 2
	mq-send "${MQ[@]}" -t orders -p 0 -q 1 2 3 4 5
	mq-send "${MQ[@]}" -t orders -p 1 -q 6 7 8
	run -0 mq-recv "${MQ[@]}" -g etl -t orders --from-new beginning -e
	[ "${#lines[@]}" -eq 8 ]
	[ "$(group_rows -g etl | tr '\n' ' ')" = "orders/0=5 0 orders/1=3 0 " ]
	mq-send "${MQ[@]}" -t orders -p 0 -q 9 10 11 12
	[ "$(group_rows -g etl | tr '\n' ' ')" = "orders/0=5 4 orders/1=3 0 " ]

	run --separate-stderr -0 mq-offset "${MQ[@]}" groups -g etl
	table=$output
	[[ ${lines[0]} =~ ^GROUP\ +TOPIC\ +PARTITION\ +CURRENT-OFFSET\ +LOG-END-OFFSET\ +LAG\ +CONSUMER-ID$ ]]
	[ "$(awk '$2 == "orders" { print $3, $4, $5, $6, $7 }' <<<"$table" | tr '\n' ' ')" = \
	  "0 5 9 4 - 1 3 3 0 - " ]
	[ "$(awk '$2 == "(total)" { print $1, $3, $4, $5, $6, $7 }' <<<"$table")" = "etl - - - 4 -" ]

	run --separate-stderr -0 mq-offset "${MQ[@]}" groups -g etl -J
	json=$output
	[ "$(jq -r 'select(.topic) | [.group, .topic, .partition, .current_offset, .log_end_offset, .lag, (.consumer_id // "-")] | join(" ")' <<<"$json")" = \
	  "$(awk '$2 != "(total)" && NR > 1 { print $1, $2, $3, $4, $5, $6, $7 }' <<<"$table")" ]
	jq_all 'select(.topic == null) | .group == "etl" and .total_lag == 4 and .members == 0 and .state == "empty" and .partitions == 2' <<<"$json"
	[ "$(jq -c 'select(.topic == null)' <<<"$json" | wc -l)" -eq 1 ]

	# A group that committed one partition only: the other is shown, with
	# "-" (null) where there is no committed offset, and no lag counted.
	mq-offset "${MQ[@]}" commit -q -g half orders/0/6
	run --separate-stderr -0 mq-offset "${MQ[@]}" groups -g half
	[ "$(awk '$2 == "orders" && $3 == 1 { print $4, $5, $6 }' <<<"$output")" = "- 3 -" ]
	[ "$(awk '$2 == "(total)" { print $6 }' <<<"$output")" = 2 ]
	run --separate-stderr -0 mq-offset "${MQ[@]}" groups -g half -J
	jq_all 'select(.partition == 1) | .current_offset == null and .lag == null and .log_end_offset == 3' <<<"$output"

	# All groups, by name; -t filters rows; unknown names are errors.
	run --separate-stderr -0 mq-offset "${MQ[@]}" groups
	[ "$(awk 'NR > 1 { print $1 }' <<<"$output" | uniq | tr '\n' ' ')" = "etl half " ]
	run --separate-stderr -0 mq-offset "${MQ[@]}" groups -t orders -J
	[ "$(jq -r 'select(.topic) | .topic' <<<"$output" | sort -u)" = orders ]
	run --separate-stderr -65 mq-offset "${MQ[@]}" groups -t nope
	[[ $stderr == *"unknown topic nope"* ]]
	run --separate-stderr -65 mq-offset "${MQ[@]}" groups -g nobody
	[[ $stderr == *"unknown group nobody"* ]]
}

@test "--max-lag: exit 1 after printing when a lag exceeds it, 0 otherwise" {
	start_store
	mq-send "${MQ[@]}" -t jobs -q a b c d e f g
	mq-offset "${MQ[@]}" commit -q -g etl jobs/0/1
	run --separate-stderr -0 mq-offset "${MQ[@]}" groups -g etl --max-lag 5
	[ -z "$stderr" ]
	run --separate-stderr -1 mq-offset "${MQ[@]}" groups -g etl --max-lag 4
	# The table is printed all the same, and stderr says which partition.
	[ "$(awk '$2 == "jobs" { print $6 }' <<<"$output")" = 5 ]
	[[ $stderr == *"group etl: lag 5 on jobs/0 exceeds 4"* ]]
	run --separate-stderr -1 mq-offset "${MQ[@]}" groups -g etl --max-lag 0 -J
	jq_all 'select(.topic) | .lag == 5' <<<"$output"
	run --separate-stderr -1 mq-offset "${MQ[@]}" groups --max-lag 4 --prometheus
	grep -qx 'mq_group_lag{group="etl",topic="jobs",partition="0"} 5' <<<"$output"
	# -q: nothing printed at all, the exit status tells.
	run --separate-stderr -1 mq-offset "${MQ[@]}" groups -g etl --max-lag 4 -q
	[ -z "$output" ] && [ -z "$stderr" ]
	mq-offset "${MQ[@]}" commit -q -g etl jobs/0/6
	run --separate-stderr -0 mq-offset "${MQ[@]}" groups -g etl --max-lag 0
}

@test "--prometheus: gauges with HELP and TYPE, values as in the JSON" {
	broker_only
	start_store --partitions 2
	mq-send "${MQ[@]}" -t orders -p 0 -q a b c d
	mq-send "${MQ[@]}" -t orders -p 1 -q e
	mq-offset "${MQ[@]}" commit -q -g etl orders/0/0
	mq-offset "${MQ[@]}" commit -q -g ops orders/0/3 orders/1/0
	for sub in topics groups status; do
		run --separate-stderr -0 mq-offset "${MQ[@]}" "$sub" --prometheus
		# Every line is a comment or a sample; every metric has one
		# HELP and one TYPE line, before its samples.
		! grep -Ev '^(# (HELP|TYPE) mq_[a-z_]+ .+|mq_[a-z_]+(\{([a-z]+="[^"]*",?)+\})? [0-9.]+)$' <<<"$output"
		for m in $(grep -Eo '^mq_[a-z_]+' <<<"$output" | sort -u); do
			[ "$(grep -c "^# TYPE $m " <<<"$output")" -eq 1 ]
			[ "$(grep -c "^# HELP $m " <<<"$output")" -eq 1 ]
			first=$(grep -n "^$m[{ ]" <<<"$output" | head -1 | cut -d: -f1)
			type=$(grep -n "^# TYPE $m " <<<"$output" | cut -d: -f1)
			[ "$type" -lt "$first" ]
		done
	done
	run -0 mq-offset "${MQ[@]}" topics --prometheus
	grep -qx 'mq_partition_end_offset{topic="orders",partition="0"} 4' <<<"$output"
	grep -qx 'mq_partition_start_offset{topic="orders",partition="1"} 0' <<<"$output"
	grep -qx 'mq_partition_messages{topic="orders",partition="1"} 1' <<<"$output"
	grep -qx '# TYPE mq_partition_bytes gauge' <<<"$output"
	run -0 mq-offset "${MQ[@]}" groups --prometheus
	grep -qx 'mq_group_offset{group="etl",topic="orders",partition="0"} 1' <<<"$output"
	grep -qx 'mq_group_lag{group="etl",topic="orders",partition="0"} 3' <<<"$output"
	grep -qx 'mq_group_lag{group="ops",topic="orders",partition="1"} 0' <<<"$output"
	grep -qx 'mq_group_lag_total{group="etl"} 3' <<<"$output"
	grep -qx 'mq_group_lag_total{group="ops"} 0' <<<"$output"
	grep -qx 'mq_group_members{group="ops"} 0' <<<"$output"
	# No sample where the value is missing (etl has no offset on 1).
	! grep -q 'mq_group_lag{group="etl",topic="orders",partition="1"}' <<<"$output"
	# The same figures as the JSON.
	[ "$(grep '^mq_group_lag{' <<<"$output" | awk '{ print $2 }' | tr '\n' ' ')" = \
	  "$(mq-offset "${MQ[@]}" groups -J | jq -r 'select(.lag != null) | .lag' | tr '\n' ' ')" ]
}

@test "retention: START-OFFSET moves forward, and topics and groups still add up" {
	broker_only
	start_broker --segment-bytes 4096 --retention-bytes 8192 --retention-check 100ms
	MQ=(-b "unix:$MQ_SOCK")
	seq -f 'log line %03g with some padding to fill the segments quickly' 300 |
		mq-send "${MQ[@]}" -t logs -q
	mq-offset "${MQ[@]}" commit -q -g early logs/0/9
	wait_for bash -c 'mq-offset topics -t logs -J | jq -e ".start_offset > 0" >/dev/null'
	sleep 0.3    # let the pass that moved it finish
	run -0 mq-offset "${MQ[@]}" topics -t logs -J
	start=$(jq .start_offset <<<"$output")
	jq -e '.end_offset == 300 and .messages == .end_offset - .start_offset' <<<"$output"
	jq -e '.bytes <= 8192 + 4096' <<<"$output"
	[ "$start" -gt 0 ] && [ "$start" -lt 300 ]
	run -0 mq-offset "${MQ[@]}" topics -t logs
	[ "$(awk 'NR == 2 { print $3, $4, $5 }' <<<"$output")" = "$start 300 $((300 - start))" ]
	# A consumer reads what is left: exactly MESSAGES records, from START.
	run -0 mq-recv "${MQ[@]}" -g late -t logs --from-new beginning -e -J
	[ "${#lines[@]}" -eq $((300 - start)) ]
	[ "$(jq -r .id <<<"${lines[0]}")" = "logs/0/$start" ]
	[ "$(group_rows -g late)" = "logs/0=300 0" ]
	# A group that fell behind retention: its lag counts from its own
	# committed offset, the deleted records included.
	[ "$(group_rows -g early)" = "logs/0=10 290" ]
}

@test "a live member is shown as CONSUMER-ID, and the group as stable" {
	broker_only
	start_store --partitions 2
	mq-send "${MQ[@]}" -t orders -p 0 -q a
	mq-recv "${MQ[@]}" -g live -t orders --commit manual > /dev/null 2>&1 &
	member=$!
	wait_for bash -c 'mq-offset groups -g live -J 2>/dev/null | jq -se "[.[] | select(.topic and .consumer_id != null)] | length == 2" >/dev/null'
	run -0 mq-offset "${MQ[@]}" groups -g live -J
	jq_all 'select(.topic == null) | .members == 1 and .state == "stable"' <<<"$output"
	[ "$(jq -r 'select(.topic) | .consumer_id' <<<"$output" | sort -u | wc -l)" -eq 1 ]
	id=$(jq -r 'select(.topic) | .consumer_id' <<<"$output" | head -1)
	run -0 mq-offset "${MQ[@]}" groups -g live
	[ "$(awk '$2 == "orders" { print $7 }' <<<"$output" | sort -u)" = "$id" ]
	run -0 mq-offset "${MQ[@]}" groups -g live --prometheus
	grep -qx 'mq_group_members{group="live"} 1' <<<"$output"
	kill "$member"
	wait "$member" || true
	# Gone with its connection; with nothing committed, so is the group.
	wait_for bash -c '! mq-offset groups -g live >/dev/null 2>&1'
}

@test "topics and groups read a data directory that a running broker holds (-d)" {
	broker_only
	start_broker
	mq-send -b "unix:$MQ_SOCK" -t orders -q a b c
	mq-offset -b "unix:$MQ_SOCK" commit -q -g etl orders/0/1
	run --separate-stderr mq-offset topics -d "$DATA" -J
	if [[ $stderr == *"not supported yet"* ]]; then
		skip "the data-directory endpoint is not there yet"
	fi
	[ "$status" -eq 0 ]
	jq -e '.topic == "orders" and .start_offset == 0 and .end_offset == 3' <<<"$output"
	run --separate-stderr -0 mq-offset groups -d "$DATA" -J
	jq_all 'select(.topic) | .current_offset == 2 and .lag == 1' <<<"$output"
	run --separate-stderr -0 mq-offset groups -d "$DATA" -g etl --max-lag 1
	# The broker is unharmed and still the writer.
	mq-send -b "unix:$MQ_SOCK" -t orders -q d
	run -0 mq-offset topics -d "$DATA" -J
	jq -e '.end_offset == 4' <<<"$output"
}

@test "mq-offset(1) passes mandoc -Tlint and has the examples it promises" {
	command -v mandoc >/dev/null || skip "mandoc is not installed"
	run -0 mandoc -Tlint -Wwarning "$ROOT/man/mq-offset.1"
	[ -z "$output" ]
	page=$(mandoc -Tutf8 "$ROOT/man/mq-offset.1" | col -b)
	for s in SYNOPSIS DESCRIPTION "EXIT STATUS" ENVIRONMENT EXAMPLES "SEE ALSO"; do
		grep -q "^$s" <<<"$page"
	done
	examples=$(sed -n '/^EXAMPLES/,/^SEE ALSO/p' <<<"$page")
	[[ $examples == *"--max-lag"* ]]           # a cron lag alert
	[[ $examples == *"--to-datetime"* && $examples == *"--execute"* ]]  # a reset
	[[ $examples == *"--commit manual"* ]]     # the pipeline
	# Every long option of --help is documented.
	for opt in $(mq-offset --help | grep -Eo -- '--[a-z-]+' | sort -u); do
		grep -q -- "$opt" <<<"$page"
	done
}

@test "bash completion completes subcommands, options and topic names" {
	start_store
	mq-send "${MQ[@]}" -t orders -q a
	mq-offset "${MQ[@]}" commit -q -g etl orders/0/0
	source "$ROOT/completions/bash/mq-offset"
	comp() {
		COMP_LINE=$1
		COMP_POINT=${#1}
		read -ra COMP_WORDS <<<"$1"
		[[ $1 == *' ' ]] && COMP_WORDS+=("")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMPREPLY=()
		_mq_offset
		echo "${COMPREPLY[*]}"
	}
	[ "$(comp 'mq-offset ')" = "status topics groups commit reset" ]
	[ "$(comp 'mq-offset gr')" = groups ]
	[ "$(comp "mq-offset ${MQ[*]} re")" = reset ]
	[[ " $(comp 'mq-offset groups --') " == *" --max-lag "* ]]
	[[ " $(comp 'mq-offset groups --') " == *" --prometheus "* ]]
	[[ " $(comp 'mq-offset groups --') " != *" --execute "* ]]
	[ "$(comp 'mq-offset reset --to-')" = "--to-earliest --to-latest --to-offset --to-datetime" ]
	[[ " $(comp 'mq-offset commit --') " == *" --force "* ]]
	[ "$(comp "mq-offset ${MQ[*]} reset -t or")" = orders ]
	[ "$(comp "mq-offset ${MQ[*]} groups -g e")" = etl ]
	# Every long option of each subcommand's --help is offered.
	for s in status topics groups commit reset; do
		offered=" $(comp "mq-offset $s --") "
		for opt in $(mq-offset "$s" --help | grep -Eo -- '--[a-z-]+' | sort -u); do
			[[ $opt == --version ]] && continue
			[[ $offered == *" $opt "* ]] || { echo "$s: $opt not offered"; false; }
		done
	done
}

@test "zsh completion parses and offers every option" {
	command -v zsh >/dev/null || skip "zsh is not installed"
	f=$ROOT/completions/zsh/_mq-offset
	run -0 zsh -n "$f"
	for s in status topics groups commit reset; do
		grep -q "^  '$s:" "$f"
	done
	for opt in $(mq-offset --help | grep -Eo -- '--[a-z-]+' | sort -u); do
		grep -q -- "$opt" "$f" || { echo "$opt missing"; false; }
	done
}
