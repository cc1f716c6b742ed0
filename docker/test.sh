#!/bin/sh
# test.sh IMAGE DIR [DURATION] runs `dt run etcd simple uniform leader --duration DURATION`
# (10 s by default) in a container of IMAGE, with DIR (made empty first) mounted as its
# results root, then checks on the host that the run's summary.json says what matters:
# operations succeeded, the leader was killed, another member took over and served, and
# the history is linearizable. `make docker-test` calls it after building IMAGE.
#
# Environment: DOCKER (docker), and run.sh's DOCKER_RUN_FLAGS. Needs jq on the host.
set -eu
image=${1:?usage: test.sh IMAGE DIR [DURATION]}
dir=${2:?usage: test.sh IMAGE DIR [DURATION]}
duration=${3:-10}
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v jq >/dev/null 2>&1; then
	echo "docker-test: jq is needed to read summary.json: apt-get install jq" >&2
	exit 1
fi
case $dir in
/*) ;;
*) dir=$(pwd)/$dir ;;
esac
rm -rf "$dir"
mkdir -p "$dir"

# The container runs as root; it hands the files back to whoever runs this, so the next
# run can empty DIR without root.
owner="$(id -u):$(id -g)"
cmd="dt run etcd simple uniform leader --duration $duration --results /root/results"
echo "docker-test: $cmd (in $image, results in $dir)"
DOCKER_RUN_ARGS="-v $dir:/root/results" "$here/run.sh" "$image" \
	sh -c "$cmd; rc=\$?; chown -R $owner /root/results; exit \$rc"

n=$(find "$dir" -name summary.json | wc -l)
if [ "$n" != 1 ]; then
	echo "docker-test: FAIL: $n summary.json files under $dir, want 1" >&2
	exit 1
fi
summary=$(find "$dir" -name summary.json)
run=$(dirname "$summary")
echo "docker-test: checking $summary"

failed=0
# check WHAT JQ-EXPR: JQ-EXPR must be true of summary.json.
check() {
	if jq -e "$2" "$summary" >/dev/null; then
		echo "  ok   $1"
	else
		echo "  FAIL $1 ($2)"
		failed=$((failed + 1))
	fi
}
check "operations succeeded: ops.ok = $(jq .ops.ok "$summary") of $(jq .ops.total "$summary")" \
	'.ops.ok > 0'
check "the fault was applied: $(jq -c '[.faults[] | {name, actions: [.actions[]? | {action, targets}]}]' "$summary")" \
	'any(.faults[]; .name == "leader" and any(.actions[]?; .action == "kill" and (.targets | length) == 1))'
check "a leader was elected before the kill and another after: leader_changes = $(jq .leader_changes "$summary"), leaders $(jq -c '[.leaders[] | .leader]' "$summary")" \
	'.leader_changes >= 1 and (.faults[0].actions[0].targets[0] as $k | .leaders[-1].leader != $k and .leaders[-1].leader != "")'
check "served while the killed leader was down: windows.during.ok = $(jq .windows.during.ok "$summary")" \
	'.windows.during.ok > 0'
check "linearizability: $(jq -r .linearizability.result "$summary") ($(jq .linearizability.ops_checked "$summary") ops checked)" \
	'.linearizability.result == "ok"'
echo "  --   unavailability_s = $(jq .unavailability_s "$summary")"
for f in config.json ops.jsonl events.jsonl $(jq -r '.files[]' "$summary"); do
	if [ -s "$run/$f" ]; then
		echo "  ok   $f"
	else
		echo "  FAIL $f missing or empty"
		failed=$((failed + 1))
	fi
done

if [ $failed != 0 ]; then
	echo "docker-test: FAIL: $failed checks failed ($run)" >&2
	exit 1
fi
echo "docker-test: ok ($run)"
