#!/bin/sh
# dt-smoke: the image's self-check until `dt run` exists. Builds the simple topology on
# dt's private Open vSwitch (userspace datapath here), checks TCP between nodes with etcd
# (TCP is what breaks when veth TX checksum offload is left on), cuts and heals a link,
# and tears everything down.
set -eu
log=/tmp/dt-up.log
dt up simple >"$log" 2>&1 &
up=$!
i=0
until grep -q 'tears it down' "$log"; do
	i=$((i + 1))
	if [ $i -gt 300 ] || ! kill -0 $up 2>/dev/null; then
		cat "$log"
		echo "dt-smoke: dt up simple did not come up" >&2
		exit 1
	fi
	sleep 0.1
done
cat "$log"
dt ls

# A standalone etcd on s1 and on s2, so TCP to each can be checked from c1.
etcds=""
for n in 1 2; do
	ip=10.0.1.$n
	dt exec s$n -- etcd --name s$n --data-dir /tmp/etcd-s$n \
		--listen-client-urls http://$ip:2379 --advertise-client-urls http://$ip:2379 \
		--listen-peer-urls http://$ip:2380 --initial-advertise-peer-urls http://$ip:2380 \
		--initial-cluster s$n=http://$ip:2380 >/tmp/etcd-s$n.log 2>&1 &
	etcds="$etcds $!"
done
# put KEY from c1 to server N; succeeds only with a working TCP path.
put() {
	dt exec c1 -- etcdctl --endpoints=http://10.0.1.$1:2379 --dial-timeout=1s --command-timeout=2s \
		put dt-smoke "$2" >/dev/null 2>&1
}
for n in 1 2; do
	i=0
	until put $n "hello s$n"; do
		i=$((i + 1))
		if [ $i -gt 50 ]; then
			tail -5 /tmp/etcd-s$n.log
			echo "dt-smoke: no TCP from c1 to etcd on s$n" >&2
			exit 1
		fi
		sleep 0.2
	done
	echo "TCP c1 -> s$n: ok (etcdctl put)"
done

dt partition c1 s1
if put 1 cut; then
	echo "dt-smoke: c1 still reaches s1 after dt partition c1 s1" >&2
	exit 1
fi
echo "partition c1 s1: c1 -> s1 fails as it should"
put 2 cut || { echo "dt-smoke: partition c1 s1 also cut c1 -> s2" >&2; exit 1; }
echo "partition c1 s1: c1 -> s2 still ok"
dt heal
put 1 healed || { echo "dt-smoke: c1 -> s1 still fails after dt heal" >&2; exit 1; }
echo "heal: c1 -> s1 ok again"

kill $etcds 2>/dev/null || true
wait $etcds 2>/dev/null || true
dt down
wait $up
echo "dt-smoke: ok"
