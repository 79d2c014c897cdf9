#!/usr/bin/env bats
# Working without a daemon (DESIGN.md section 6): the programs on a data
# directory with -d. What every program does is tested by its own files,
# which run a second time with MQ_TEST_STORE=dir; here are the scenarios
# that only a directory has: several writers taking turns, a broker in
# the way, a writer killed mid-append, groups held together by locks,
# a stopped broker's directory read in place.

load helpers

setup() {
	mq_setup
	dir_only
}
teardown() {
	local p
	for p in ${BG_PIDS:-}; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	mq_teardown
}

# bg CMD...: run CMD in the background, killed in teardown; sets BG.
bg() {
	"$@" &
	BG=$!
	BG_PIDS="${BG_PIDS:-} $BG"
}

# count_lines FILE: lines in FILE (0 if it does not exist).
count_lines() {
	if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi
}

@test "-b and -d together are a usage error in every program" {
	run --separate-stderr -64 mq-send -b unix:/x -d "$DATA" -t t m
	[[ $stderr == *"-b and -d"* ]]
	run --separate-stderr -64 mq-recv -b unix:/x -d "$DATA" -t t
	run --separate-stderr -64 mq-offset topics -b unix:/x -d "$DATA"
	run --separate-stderr -64 mq-replay -b unix:/x -d "$DATA" -g g -l
	[ ! -e "$DATA" ]
}

@test "-d creates a missing data directory, not its parent; \$MQ_DIR selects one too" {
	run --separate-stderr -0 mq-send -d "$T/new" -t t one
	[ "$output" = t/0/0 ]
	[ -d "$T/new/topics/t" ]
	run --separate-stderr -74 mq-send -d "$T/no/such" -t t one
	[[ $stderr == *"$T/no/such"* ]]
	[ ! -e "$T/no" ]
	# Reading never creates anything.
	run --separate-stderr mq-offset topics -d "$T/absent"
	[ "$status" -ne 0 ]
	[ ! -e "$T/absent" ]
	MQ_BROKER= MQ_DIR="$T/new" run --separate-stderr -0 mq-send -t t two
	[ "$output" = t/0/1 ]
	MQ_BROKER= MQ_DIR="$T/new" run --separate-stderr -0 mq-recv -t t -e
	[ "$output" = "$(printf 'one\ntwo')" ]
}

@test "two concurrent writers to one partition: every message once, offsets dense" {
	mkdir -p "$DATA"
	seq 1 1500 | sed 's/^/a-/' > "$T/a"
	seq 1 1500 | sed 's/^/b-/' > "$T/b"
	mq-send -d "$DATA" -t t -p 0 -q < "$T/a" &
	a=$!
	mq-send -d "$DATA" -t t -p 0 -q < "$T/b" &
	b=$!
	wait "$a"
	wait "$b"
	run --separate-stderr -0 mq-recv -d "$DATA" -t t -e -f '%o %v\n'
	[ "${#lines[@]}" -eq 3000 ]
	# Offsets 0..2999 in order, no gap, no repeat...
	[ "$(cut -d' ' -f1 <<< "$output")" = "$(seq 0 2999)" ]
	# ...every message exactly once, each writer's in its own order...
	[ "$(cut -d' ' -f2 <<< "$output" | grep '^a-' )" = "$(cat "$T/a")" ]
	[ "$(cut -d' ' -f2 <<< "$output" | grep '^b-' )" = "$(cat "$T/b")" ]
	# ...and they took turns rather than one waiting for the other.
	turns=$(cut -c 1-3 <<< "$(cut -d' ' -f2 <<< "$output")" | uniq | wc -l)
	echo "# $turns turns" >&3
	[ "$turns" -gt 2 ]
	# Both async, many batches at a time.
	seq 1 20000 | sed 's/^/c-/' > "$T/c"
	seq 1 20000 | sed 's/^/d-/' > "$T/d"
	mq-send -d "$DATA" -t t -p 0 -q --async --batch-bytes 1K < "$T/c" &
	c=$!
	mq-send -d "$DATA" -t t -p 0 -q --async --batch-bytes 1K < "$T/d" &
	d=$!
	wait "$c"
	wait "$d"
	run --separate-stderr -0 mq-recv -d "$DATA" -t t -e -o 3000 -f '%o %v\n'
	[ "$(cut -d' ' -f1 <<< "$output")" = "$(seq 3000 42999)" ]
	[ "$(cut -d' ' -f2 <<< "$output" | grep '^c-' )" = "$(cat "$T/c")" ]
	[ "$(cut -d' ' -f2 <<< "$output" | grep '^d-' )" = "$(cat "$T/d")" ]
}

@test "a broker on the directory: writers refused naming its pid, readers work; after it stops, writers work" {
	start_broker
	mq-send -b "unix:$MQ_SOCK" -t t one two > /dev/null
	# Refused at once, with the pid and the way around it.
	SECONDS=0
	run --separate-stderr -74 mq-send -d "$DATA" -t t three
	[[ $stderr == *"pid $BROKER_PID"* ]]
	[[ $stderr == *"-b"* ]]
	[ "$SECONDS" -lt 3 ]
	run --separate-stderr -74 mq-recv -d "$DATA" -t t -g g
	[[ $stderr == *"pid $BROKER_PID"* ]]
	run --separate-stderr -74 mq-offset commit -d "$DATA" -g g t/0/1
	[[ $stderr == *"pid $BROKER_PID"* ]]
	# Reading needs no lock.
	run --separate-stderr -0 mq-offset topics -d "$DATA" -J
	[ "$(jq -r '.topic + " " + (.end_offset | tostring)' <<< "$output")" = "t 2" ]
	run --separate-stderr -0 mq-offset groups -d "$DATA"
	run --separate-stderr -0 mq-recv -d "$DATA" -t t -e
	[ "$output" = "$(printf 'one\ntwo')" ]
	# The broker is unharmed; once it is gone the writer gets in.
	kill -0 "$BROKER_PID"
	stop_broker
	[ "$BROKER_STATUS" -eq 0 ]
	run --separate-stderr -0 mq-send -d "$DATA" -t t three
	[ "$output" = t/0/2 ]
	# And the broker takes the directory back afterwards.
	start_broker
	run --separate-stderr -0 mq-recv -b "unix:$MQ_SOCK" -t t -e
	[ "$output" = "$(printf 'one\ntwo\nthree')" ]
}

@test "a torn batch at the tail is invisible to readers and cut by the next writer" {
	mq-send -d "$DATA" -t t one two three > /dev/null
	seg=$(ls "$DATA"/topics/t/0/*.log)
	# What a writer killed half way through a batch leaves behind.
	head -c 40 "$seg" >> "$seg"
	run --separate-stderr -0 mq-offset topics -d "$DATA" -J
	[ "$(jq .end_offset <<< "$output")" = 3 ]
	run --separate-stderr -0 mq-recv -d "$DATA" -t t -e
	[ "$output" = "$(printf 'one\ntwo\nthree')" ]
	run --separate-stderr -0 mq-send -d "$DATA" -t t four
	[ "$output" = t/0/3 ]
	run --separate-stderr -0 mq-recv -d "$DATA" -t t -e -f '%o %v\n'
	[ "$output" = "$(printf '0 one\n1 two\n2 three\n3 four')" ]
}

# more_than N FILE: FILE has more than N lines.
more_than() { [ "$(count_lines "$2")" -gt "$1" ]; }

# log_bytes: the bytes of partition t/0's segment files.
log_bytes() {
	stat -c %s "$DATA"/topics/t/0/*.log | awk '{ s += $1 } END { print s }'
}

# kill_writer ROUNDS MESSAGE-BYTES MQ-SEND-OPTIONS...: feed mq-send -d
# an endless stream of big messages and kill -9 it while it writes, up
# to ROUNDS times on the same directory (stopping once a kill has left a
# torn batch behind); then check that the next writer recovers and that
# every message any of them acknowledged is there, offsets dense.
kill_writer() {
	local rounds=$1 size=$2 round before w torn=no
	shift 2
	mkdir -p "$DATA"
	{ head -c "$size" /dev/zero | tr '\0' x; echo; } > "$T/line"
	: > "$T/acked"
	for round in $(seq 1 "$rounds"); do
		(while cat "$T/line" "$T/line" "$T/line" "$T/line"; do :; done) \
			2> /dev/null | mq-send -d "$DATA" -t t "$@" >> "$T/acked" &
		w=$!
		BG_PIDS="$w"
		before=$(count_lines "$T/acked")
		wait_for more_than "$before" "$T/acked"
		sleep "0.$((RANDOM % 3 + 1))"
		kill -KILL "$w"
		wait "$w" || true
		# A batch cut short is not visible to readers.
		run --separate-stderr -0 mq-offset topics -d "$DATA" -J
		if [ "$(log_bytes)" -gt "$(jq .bytes <<< "$output")" ]; then
			torn=yes
			break
		fi
	done
	echo "# $round kill(s), torn tail left: $torn" >&3
	acked=$(count_lines "$T/acked")
	[ "$acked" -gt 0 ]
	# The next writer opens the partition, cuts what was torn, appends.
	run --separate-stderr -0 mq-send -d "$DATA" -t t after
	next=${output##*/}
	[ "$next" -ge "$acked" ]
	[ "$(log_bytes)" -eq "$(mq-offset topics -d "$DATA" -J | jq .bytes)" ]
	run --separate-stderr -0 mq-recv -d "$DATA" -t t -e -f '%o %i\n'
	# Offsets dense from 0 to the new message...
	[ "$(cut -d' ' -f1 <<< "$output")" = "$(seq 0 "$next")" ]
	# ...and every acknowledged id among them.
	cut -d' ' -f2 <<< "$output" | sort > "$T/present"
	sort "$T/acked" | comm -23 - "$T/present" > "$T/lost"
	[ ! -s "$T/lost" ]
}

@test "kill -9 of a sync writer mid-append: the next writer recovers, nothing acknowledged is lost" {
	kill_writer 1 100000 --sync
}

@test "kill -9 of an async writer mid-batch: the next writer cuts the torn tail, nothing acknowledged is lost" {
	kill_writer 8 200000 --async --batch-bytes 8M
}

@test "a reader at the end is woken by a writer's append at once" {
	mq-send -d "$DATA" -t t old > /dev/null
	bg mq-recv -d "$DATA" -t t -o end -n 2 -f '%v\n'
	reader=$BG
	sleep 0.5
	SECONDS=0
	mq-send -d "$DATA" -t t new1 new2 > /dev/null
	wait_for bash -c "! kill -0 $reader 2>/dev/null"
	[ "$SECONDS" -lt 3 ]
}

# owners: how many partitions each member of group g holds, sorted.
owners() {
	mq-offset groups -d "$DATA" -g g -J |
		jq -r 'select(.consumer_id != null) | .consumer_id' | sort |
		uniq -c | awk '{print $1}' | sort | tr '\n' ' '
}
split_is() { [ "$(owners)" = "$1" ]; }
# seen N FILE...: the files hold N distinct lines.
seen() { local n=$1; shift; [ "$(sort -u "$@" | wc -l)" -eq "$n" ]; }
# has_all LIST FILE: every line of LIST is in FILE.
has_all() { [ -z "$(sort -u "$2" | comm -13 - <(sort -u "$1"))" ]; }

@test "a consumer group without a broker: members share the partitions and take over from a dead one" {
	make_topic t 4
	mq-recv -d "$DATA" -t t -g g --session-timeout 1s --commit-interval 0 \
		-f '%i\n' > "$T/a" &
	a=$!
	BG_PIDS="$a"
	mq-recv -d "$DATA" -t t -g g --session-timeout 1s --commit-interval 0 \
		-f '%i\n' > "$T/b" &
	b=$!
	BG_PIDS="$BG_PIDS $b"
	# They split the four partitions two and two.
	wait_for split_is "2 2 "
	mq-send -d "$DATA" -t t $(seq 1 200) > "$T/sent1"
	wait_for seen 200 "$T/a" "$T/b"
	[ "$(count_lines "$T/a")" -gt 0 ]
	[ "$(count_lines "$T/b")" -gt 0 ]
	[ "$(cat "$T/a" "$T/b" | sort -u)" = "$(sort "$T/sent1")" ]
	# a dies: b takes over its partitions where a's commits left them.
	kill -KILL "$a"
	wait "$a" || true
	mq-send -d "$DATA" -t t $(seq 201 400) > "$T/sent2"
	wait_for has_all "$T/sent2" "$T/b"
	split_is "4 "
	# b stops cleanly: the final commit leaves no lag.
	kill -TERM "$b"
	wait "$b"
	run --separate-stderr -0 mq-offset groups -d "$DATA" -g g -J
	[ "$(jq -s 'map(select(.total_lag != null)) | .[0].total_lag' <<< "$output")" = 0 ]
	[ "$(jq -s 'map(select(.members != null)) | .[0].members' <<< "$output")" = 0 ]
}

@test "a member restarted with the same pid, as in a container, takes its partitions back" {
	dir_only
	unshare -pf --mount-proc true 2> /dev/null ||
		skip "cannot start a process in a new pid namespace here"
	start_store
	make_topic t 2
	# The first one runs as pid 1, takes both partitions (committing
	# where it starts), and is killed.
	unshare -pf --mount-proc --kill-child mq-recv -d "$DATA" -t t -g g \
		--from-new beginning > /dev/null 2>&1 3>&- &
	local first=$!
	BG_PIDS="${BG_PIDS:-} $first"
	wait_for eval '[ "$(committed g)" = "t/0=0 t/1=0 " ]'
	kill -KILL "$first"
	wait "$first" 2> /dev/null || true
	seq 1 4 | mq-send -d "$DATA" -t t -q
	# The next one is pid 1 again, on the same host: the dead one's
	# partitions are free, and it takes them.
	run --separate-stderr -0 timeout 20 unshare -pf --mount-proc \
		mq-recv -d "$DATA" -t t -g g -e
	[ "$(sort -n <<< "$output")" = "$(seq 1 4)" ]
}

@test "a stopped broker's directory, or a copy of it, is read in place" {
	start_broker
	mq-send -b "unix:$MQ_SOCK" -t t one two three > /dev/null
	mq-recv -b "unix:$MQ_SOCK" -t t -g g --from-new beginning -n 2 > /dev/null
	stop_broker
	cp -a "$DATA" "$T/copy"
	for d in "$DATA" "$T/copy"; do
		run --separate-stderr -0 mq-offset groups -d "$d" -g g -J
		[ "$(jq -r 'select(.topic) | [.topic, .partition, .current_offset, .lag] | @tsv' <<< "$output")" = "$(printf 't\t0\t2\t1')" ]
		run --separate-stderr -0 mq-recv -d "$d" -t t -e
		[ "$output" = "$(printf 'one\ntwo\nthree')" ]
	done
	# A member on the copy carries on where the broker's left off.
	run --separate-stderr -0 mq-recv -d "$T/copy" -t t -g g -e
	[ "$output" = three ]
}
