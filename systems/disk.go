package systems

// DiskFiler is an optional capability of a System: names for the files of a member's
// data dir, each a glob relative to it, which the corrupt fault's file: field accepts
// (`corrupt s1 file=wal`): the disk layer knows no system's layout.
type DiskFiler interface {
	DiskFiles() map[string]string
}

// DiskFiles are etcd's files (3.4 and later): the WAL segments, the raft snapshots and
// the bolt database of the key space.
func (e *etcd) DiskFiles() map[string]string {
	return map[string]string{
		"wal":  "member/wal/*.wal",
		"snap": "member/snap/*.snap",
		"db":   "member/snap/db",
	}
}

// DiskFiles are ZooKeeper's (3.8): its transaction log segments and its snapshots.
func (zooKeeper) DiskFiles() map[string]string {
	return map[string]string{
		"log":  "version-2/log.*",
		"snap": "version-2/snapshot.*",
	}
}
