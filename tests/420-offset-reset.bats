#!/usr/bin/env bats
# mq-offset reset: every target as a dry run (nothing changes) and with
# --execute (offsets change, and mq-recv -g starts there), refusal while
# the group has live members, clamping to [start, end], bad input.

load helpers

setup() { mq_setup; }
teardown() {
	if [ -n "${MEMBER:-}" ]; then
		kill "$MEMBER" 2>/dev/null || true
		wait "$MEMBER" 2>/dev/null || true
	fi
	mq_teardown
}

# The NEW-OFFSET column of a reset's table, as words.
new_offsets() {
	awk 'NR > 1 { print $3 "=" $5 }' <<<"$1" | tr '\n' ' '
}

# First offset mq-recv -g etl gets from each partition, then reads to the
# end (committing, so the group ends at the end of both partitions).
first_read() {
	mq-recv "${MQ[@]}" -g etl -t orders -e -J |
		jq -rs 'group_by(.partition) | map("\(.[0].partition)=\(.[0].offset)") | join(" ")'
}

# orders/0 holds 10 records, orders/1 holds 6; group etl is at 4 and 2.
orders() {
	start_store --partitions 2
	seq 0 9 | mq-send "${MQ[@]}" -t orders -p 0 -q
	seq 0 5 | mq-send "${MQ[@]}" -t orders -p 1 -q
	mq-offset "${MQ[@]}" commit -q -g etl orders/0/3 orders/1/1
}

@test "every target as a dry run: the table shows the plan and nothing changes" {
	broker_only
	orders
	while IFS='|' read -r target want; do
		run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders $target
		[[ ${lines[0]} =~ ^GROUP\ +TOPIC\ +PARTITION\ +CURRENT-OFFSET\ +NEW-OFFSET$ ]]
		[ "$(new_offsets "$output")" = "$want" ] || { echo "$target: $output"; false; }
		[ "$(awk 'NR > 1 { print $1, $2, $4 }' <<<"$output" | tr '\n' ' ')" = "etl orders 4 etl orders 2 " ]
		[[ $stderr == *"dry run"*"nothing was changed"* ]]
		[ "$(committed etl)" = "orders/0=4 orders/1=2 " ]
	done <<'EOF'
--to-earliest|0=0 1=0 
--to-latest|0=10 1=6 
--to-offset 5|0=5 1=5 
--shift-by -2|0=2 1=0 
--shift-by 3|0=7 1=5 
--to-datetime 2000-01-01|0=0 1=0 
--to-datetime 2999-12-31T23:59:59Z|0=10 1=6 
--by-duration 1h|0=0 1=0 
EOF
	# JSON says it was not executed.
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders --to-latest -J
	jq_all '.executed == false and .clamped == false and .group == "etl"' <<<"$output"
	[ "$(jq -r '"\(.partition)=\(.current_offset)>\(.new_offset)"' <<<"$output" | tr '\n' ' ')" = "0=4>10 1=2>6 " ]
	# -q: not a word.
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -q -g etl -t orders --to-latest
	[ -z "$output" ] && [ -z "$stderr" ]
	[ "$(committed etl)" = "orders/0=4 orders/1=2 " ]
}

@test "every target with --execute: the offsets change and mq-recv -g starts there" {
	broker_only
	orders
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders --to-earliest --execute
	[ "$(new_offsets "$output")" = "0=0 1=0 " ]
	[[ $stderr != *"dry run"* ]]
	[ "$(committed etl)" = "orders/0=0 orders/1=0 " ]
	[ "$(first_read)" = "0=0 1=0" ]
	[ "$(committed etl)" = "orders/0=10 orders/1=6 " ]

	mq-offset "${MQ[@]}" reset -q -g etl -t orders --shift-by -3 --execute
	[ "$(committed etl)" = "orders/0=7 orders/1=3 " ]
	[ "$(first_read)" = "0=7 1=3" ]

	mq-offset "${MQ[@]}" reset -q -g etl -t orders --to-offset 4 --execute
	[ "$(first_read)" = "0=4 1=4" ]

	mq-offset "${MQ[@]}" reset -q -g etl -t orders --by-duration 1h --execute
	[ "$(first_read)" = "0=0 1=0" ]

	mq-offset "${MQ[@]}" reset -q -g etl -t orders --to-datetime 2000-01-01T00:00:00+02:00 --execute
	[ "$(first_read)" = "0=0 1=0" ]

	# Moving backwards and then to the latest: nothing left to read.
	mq-offset "${MQ[@]}" reset -q -g etl -t orders --to-earliest --execute
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders --to-latest --execute -J
	jq_all '.executed == true and .new_offset == .current_offset + (if .partition == 0 then 10 else 6 end)' <<<"$output"
	[ "$(first_read)" = "" ]
	[ "$(committed etl)" = "orders/0=10 orders/1=6 " ]
}

@test "-t TOPIC:PARTITIONS resets only those partitions" {
	broker_only
	orders
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders:1 --to-earliest --execute
	[ "$(new_offsets "$output")" = "1=0 " ]
	[ "$(committed etl)" = "orders/0=4 orders/1=0 " ]
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders:0-1 --to-offset 3
	[ "$(new_offsets "$output")" = "0=3 1=3 " ]
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders:1,0 -t orders:1 --to-latest
	[ "$(new_offsets "$output")" = "1=6 0=10 " ]
	# A group with no offsets yet can be placed before its first start.
	mq-offset "${MQ[@]}" reset -q -g fresh -t orders:0 --to-offset 8 --execute
	[ "$(committed fresh)" = "orders/0=8 orders/1=- " ]
}

@test "--to-datetime and --by-duration find the first record at or after the time" {
	start_store
	mq-send "${MQ[@]}" -t events -q a0 a1 a2
	sleep 0.6
	t1=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
	ms=$(date -d "$t1" +%s%3N)
	sleep 0.6
	mq-send "${MQ[@]}" -t events -q b3 b4
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t events --to-datetime "$t1"
	[ "$(new_offsets "$output")" = "0=3 " ]
	# The same instant with a zone offset, and in local time.
	plus2="$(TZ=UTC-2 date -d "@$((ms / 1000))" +%Y-%m-%dT%H:%M:%S).$(printf %03d $((ms % 1000)))+02:00"
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t events --to-datetime "$plus2"
	[ "$(new_offsets "$output")" = "0=3 " ]
	local="$(TZ=America/New_York date -d "@$((ms / 1000))" '+%Y-%m-%d %H:%M:%S').$(printf %03d $((ms % 1000)))"
	TZ=America/New_York run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t events --to-datetime "$local"
	[ "$(new_offsets "$output")" = "0=3 " ]
	# Recent enough for b3 and b4 only, not the a's 1.2 s old.
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t events --by-duration 600ms --execute
	[ "$(new_offsets "$output")" = "0=3 " ]
	run -0 mq-recv "${MQ[@]}" -g etl -t events -e
	[ "$(echo $output)" = "b3 b4" ]
	# After the newest record: the end.
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t events --by-duration 0s
	[ "$(new_offsets "$output")" = "0=5 " ]
}

@test "refused (75) while the group has a live member, unless --force" {
	broker_only
	orders
	mq-recv "${MQ[@]}" -g etl -t orders --commit manual > /dev/null 2>&1 &
	MEMBER=$!
	wait_for bash -c 'mq-offset groups -g etl -J 2>/dev/null | jq -e "select(.topic == null) | .members == 1" >/dev/null'
	run --separate-stderr -75 mq-offset "${MQ[@]}" reset -g etl -t orders --to-earliest --execute
	[[ $stderr == *"group etl has 1 live member(s)"*"--force"* ]]
	[ -z "$output" ]
	[ "$(committed etl)" = "orders/0=4 orders/1=2 " ]
	run --separate-stderr -75 mq-offset "${MQ[@]}" reset -g etl -t orders --to-earliest
	[ "$(committed etl)" = "orders/0=4 orders/1=2 " ]
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders --to-earliest --execute --force
	[ "$(new_offsets "$output")" = "0=0 1=0 " ]
	[ "$(committed etl)" = "orders/0=0 orders/1=0 " ]
	# Once the member is gone, no --force is needed.
	kill "$MEMBER"
	wait "$MEMBER" || true
	MEMBER=
	wait_for bash -c 'mq-offset groups -g etl -J 2>/dev/null | jq -e "select(.topic == null) | .members == 0" >/dev/null'
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders --to-latest --execute
	[ "$(committed etl)" = "orders/0=10 orders/1=6 " ]
}

@test "targets outside [start, end] are clamped and reported" {
	broker_only
	orders
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders --to-offset 1000
	[ "$(new_offsets "$output")" = "0=10 1=6 " ]
	[[ $stderr == *"orders/0: 1000 is past the log end offset 10; using 10"* ]]
	[[ $stderr == *"orders/1: 1000 is past the log end offset 6; using 6"* ]]
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders --shift-by -3 -J
	jq_all 'if .partition == 1 then .clamped == true and .new_offset == 0 else .clamped == false and .new_offset == 1 end' <<<"$output"
	[[ $stderr == *"orders/1: -1 is before the log start offset 0; using 0"* ]]
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t orders --shift-by 9223372036854775807 --execute
	[ "$(committed etl)" = "orders/0=10 orders/1=6 " ]
}

@test "after retention, --to-earliest and too low an offset go to the new start" {
	broker_only
	start_broker --segment-bytes 4096 --retention-bytes 8192 --retention-check 100ms
	MQ=(-b "unix:$MQ_SOCK")
	seq -f 'record %03g, padded so that segments fill up fast enough' 300 |
		mq-send "${MQ[@]}" -t logs -q
	wait_for bash -c 'mq-offset topics -t logs -J | jq -e ".start_offset > 0" >/dev/null'
	sleep 0.3
	start=$(mq-offset "${MQ[@]}" topics -t logs -J | jq .start_offset)
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t logs --to-offset 0 --execute
	[ "$(new_offsets "$output")" = "0=$start " ]
	[[ $stderr == *"0 is before the log start offset $start; using $start"* ]]
	run --separate-stderr -0 mq-offset "${MQ[@]}" reset -g etl -t logs --to-earliest
	[ "$(new_offsets "$output")" = "0=$start " ]
	[ -z "$stderr" ] || [[ $stderr == *"dry run"* ]]
	run -0 mq-recv "${MQ[@]}" -g etl -t logs -e -n 1 -J
	[ "$(jq -r .id <<<"$output")" = "logs/0/$start" ]
}

@test "bad input: garbage times, bad numbers and partitions, unknown names" {
	broker_only
	orders
	while IFS='|' read -r args why; do
		run --separate-stderr -64 mq-offset "${MQ[@]}" reset -g etl -t orders $args
		[[ $stderr == *"$why"* ]] || { echo "$args: $stderr"; false; }
	done <<'EOF'
--to-datetime yesterday|--to-datetime yesterday: not a date and time
--to-datetime 2026-13-01|--to-datetime 2026-13-01: no such date
--to-datetime 2026-02-29|no such date
--to-datetime 2026-11-21T25:00|no such time of day
--to-datetime 2026-11-21T13:00:00+2|zone offset
--to-datetime 2026-11-21T13:00:00.|nothing after the decimal point
--to-datetime 2026-11-21T13|the time must be hh:mm
--to-datetime 2026-11-21T13:00:00Zjunk|unexpected 'junk'
--to-offset -1|--to-offset -1
--to-offset x|--to-offset x
--shift-by 1.5|--shift-by 1.5
--by-duration 5weeks|--by-duration 5weeks
--to-earliest --to-latest|choose one target
--execute|needs a target
EOF
	run --separate-stderr -64 mq-offset "${MQ[@]}" reset -g etl --to-earliest
	[[ $stderr == *"needs -t TOPIC"* ]]
	run --separate-stderr -64 mq-offset "${MQ[@]}" reset -t orders --to-earliest
	[[ $stderr == *"needs -g GROUP"* ]]
	run --separate-stderr -64 mq-offset "${MQ[@]}" reset -g etl -t orders:x --to-earliest
	[[ $stderr == *"bad partition 'x'"* ]]
	run --separate-stderr -64 mq-offset "${MQ[@]}" reset -g etl -t orders:3-1 --to-earliest
	[[ $stderr == *"bad partition range '3-1'"* ]]
	run --separate-stderr -65 mq-offset "${MQ[@]}" reset -g etl -t orders:0,2 --to-earliest --execute
	[[ $stderr == *"topic orders has no partition 2 (it has 2)"* ]]
	run --separate-stderr -65 mq-offset "${MQ[@]}" reset -g etl -t nope --to-earliest --execute
	[[ $stderr == *"unknown topic nope"* ]]
	# Nothing was changed by any of it.
	[ "$(committed etl)" = "orders/0=4 orders/1=2 " ]
}
