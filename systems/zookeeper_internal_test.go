package systems

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestZooKeeperMemberCommand(t *testing.T) {
	z, err := Lookup("zookeeper")
	if err != nil {
		t.Fatal(err)
	}
	c := threeMembers()
	cmd := z.MemberCommand(c, 1, false)
	if cmd.Argv[0] != "/usr/bin/java" || !slices.Contains(cmd.Argv, "-Xmx256m") ||
		cmd.Argv[len(cmd.Argv)-2] != ZooKeeperMain || cmd.Argv[len(cmd.Argv)-1] != "/run/x/data/s2/zoo.cfg" {
		t.Errorf("argv %q", cmd.Argv)
	}
	if i := slices.Index(cmd.Argv, "-cp"); i < 0 || !strings.HasPrefix(cmd.Argv[i+1], ZooKeeperJar+":") {
		t.Errorf("classpath in %q", cmd.Argv)
	}
	if cmd.DataDir != "/run/x/data/s2" || cmd.Log != "/run/x/logs/s2.log" {
		t.Errorf("data dir %q, log %q", cmd.DataDir, cmd.Log)
	}
	if len(cmd.Files) != 2 || cmd.Files[0].Path != "/run/x/data/s2/zoo.cfg" || cmd.Files[1].Path != "/run/x/data/s2/myid" ||
		string(cmd.Files[1].Data) != "2\n" {
		t.Fatalf("files %+v", cmd.Files)
	}
	cfg := parseKeyValues(string(cmd.Files[0].Data))
	want := map[string]string{
		"tickTime": "100", "initLimit": "20", "syncLimit": "10", "cnxTimeout": "1000",
		"dataDir": "/run/x/data/s2", "clientPort": "2181",
		"admin.enableServer": "true", "admin.serverAddress": "127.0.0.1", "admin.serverPort": "8080",
		"server.1": "10.0.0.1:2888:3888", "server.2": "10.0.0.2:2888:3888", "server.3": "10.0.0.3:2888:3888",
	}
	for k, v := range want {
		if cfg[k] != v {
			t.Errorf("zoo.cfg %s = %q, want %q", k, cfg[k], v)
		}
	}
	if wl := cfg["4lw.commands.whitelist"]; !strings.Contains(wl, "srvr") || !strings.Contains(wl, "conf") {
		t.Errorf("four-letter words allowed: %q", wl)
	}
	for _, k := range []string{"clientPortAddress", "snapCount"} {
		if _, ok := cfg[k]; ok {
			t.Errorf("zoo.cfg sets %s: %s", k, cmd.Files[0].Data)
		}
	}
	// The rejoining member starts the same way, on the same data dir.
	if again := z.MemberCommand(c, 1, true); !slices.Equal(again.Argv, cmd.Argv) || again.DataDir != cmd.DataDir {
		t.Errorf("rejoin argv %q", again.Argv)
	}

	c.FailureTimeout, c.Bin, c.SnapshotCount, c.SharedNetns = 2.5, "/opt/java", 100, true
	cmd = z.MemberCommand(c, 2, false)
	cfg = parseKeyValues(string(cmd.Files[0].Data))
	if cmd.Argv[0] != "/opt/java" || cfg["tickTime"] != "250" || cfg["cnxTimeout"] != "2500" || cfg["snapCount"] != "100" ||
		cfg["clientPortAddress"] != "10.0.0.3" || cfg["admin.serverAddress"] != "10.0.0.3" {
		t.Errorf("argv %q\nzoo.cfg:\n%s", cmd.Argv, cmd.Files[0].Data)
	}
	if ep := z.LocalEndpoint(c, 2); ep != "10.0.0.3:2181" {
		t.Errorf("shared netns local endpoint %q", ep)
	}
	if ep := z.LocalEndpoint(threeMembers(), 2); ep != "127.0.0.1:2181" {
		t.Errorf("local endpoint %q", ep)
	}
	eps := []string{"10.0.0.1:2181", "10.0.0.2:2181", "10.0.0.3:2181"}
	if got := z.ClientEndpoints(c); !slices.Equal(got, eps) {
		t.Errorf("ClientEndpoints = %v", got)
	}
	if got := z.ClientEnv(c); !slices.Equal(got, []string{"ZK_SERVERS=" + strings.Join(eps, ",")}) {
		t.Errorf("ClientEnv = %v", got)
	}
	cli := z.(CLIer).CLI(c)
	if cli.Name != "zkCli" || cli.Argv[0] != "/opt/java" || !slices.Equal(cli.Argv[len(cli.Argv)-3:], []string{"org.apache.zookeeper.ZooKeeperMain", "-server", strings.Join(eps, ",")}) {
		t.Errorf("CLI = %+v", cli)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	cmd := Command{Files: []File{{Path: filepath.Join(dir, "a", "b", "zoo.cfg"), Data: []byte("x=1\n")}}}
	if err := WriteFiles(cmd); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(cmd.Files[0].Path); err != nil || string(b) != "x=1\n" {
		t.Fatalf("%q %v", b, err)
	}
}

func TestParseSrvr(t *testing.T) {
	leader := "Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC\nLatency min/avg/max: 0/0.0/0\n" +
		"Received: 1\nSent: 0\nConnections: 1\nOutstanding: 0\nZxid: 0x200000007\nMode: leader\nNode count: 5\n" +
		"Proposal sizes last/min/max: -1/-1/-1\n"
	for _, tc := range []struct {
		in   string
		want srvr
		err  bool
	}{
		{leader, srvr{Serving: true, Mode: "leader", Zxid: 0x200000007}, false},
		{"Zxid: 0x0\nMode: follower\n", srvr{Serving: true, Mode: "follower"}, false},
		{zkNotServing + "\n", srvr{}, false},
		{"Mode: follower\n", srvr{}, true},
		{"Zxid: 0xzz\nMode: leader\n", srvr{}, true},
		{"", srvr{}, true},
	} {
		got, err := parseSrvr(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseSrvr(%q) = %+v, %v", tc.in, got, err)
		}
	}
	if e := zkEpoch(0x200000007); e != 2 {
		t.Errorf("epoch %d", e)
	}
}

func TestParseConfAndMntr(t *testing.T) {
	conf := "clientPort=2181\nsecureClientPort=-1\ndataDir=/tmp/d1/version-2\nserverId=3\nmembership: \n" +
		"server.1=127.0.77.11:2888:3888:participant\nversion=0\n"
	kv := parseKeyValues(conf)
	if kv["serverId"] != "3" || kv["dataDir"] != "/tmp/d1/version-2" || kv["server.1"] != "127.0.77.11:2888:3888:participant" {
		t.Errorf("conf: %v", kv)
	}
	mntr := "zk_version\t3.8.0\nzk_server_state\tleader\nzk_synced_followers\t2\n"
	if kv := parseKeyValues(mntr); kv["zk_server_state"] != "leader" || kv["zk_synced_followers"] != "2" {
		t.Errorf("mntr: %v", kv)
	}
}

func TestZooKeeperSnapshotIndex(t *testing.T) {
	dir := t.TempDir()
	z := zooKeeper{}
	if i, err := z.SnapshotIndex(dir); err != nil || i != 0 {
		t.Fatalf("no version-2: %d, %v", i, err)
	}
	v := filepath.Join(dir, "version-2")
	if err := os.MkdirAll(v, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"snapshot.0", "snapshot.100000064", "snapshot.2000000c8", "log.300000001", "currentEpoch", "snapshot.zz"} {
		if err := os.WriteFile(filepath.Join(v, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if i, err := z.SnapshotIndex(dir); err != nil || i != 0x2000000c8 {
		t.Errorf("SnapshotIndex = %#x, %v; want 0x2000000c8", i, err)
	}
	if err := os.WriteFile(filepath.Join(v, "currentEpoch"), []byte("7"), 0o644); err != nil {
		t.Fatal(err)
	}
	if e, err := readEpoch(v); err != nil || e != 7 {
		t.Errorf("readEpoch = %d, %v", e, err)
	}
}

func TestZooKeeperPathAndUnreachable(t *testing.T) {
	if p := zkPath("007"); p != "/dt/007" {
		t.Errorf("zkPath = %q", p)
	}
	if p := zkPath("a/b"); p != "/dt/a%2Fb" {
		t.Errorf("zkPath(a/b) = %q", p)
	}
	z := zooKeeper{}
	begin := time.Now()
	st, err := z.Status(context.Background(), "127.0.0.1:1")
	if err == nil || st.Healthy || st.Error == "" {
		t.Fatalf("Status of a closed port = %+v, %v", st, err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Status took %v", took)
	}
	if _, err := z.NewKV(nil, time.Second); err == nil {
		t.Error("NewKV with no endpoints succeeded")
	}
}

// A client of a member that is down fails its operations at the timeout without sending
// them, redials with a bounded backoff, and Close ends its connection loop.
func TestZooKeeperClientOfADeadMember(t *testing.T) {
	before := runtime.NumGoroutine()
	kv, err := zooKeeper{}.NewKV([]string{"127.0.0.1:1"}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	err = kv.Put(context.Background(), "k", "v")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no session") {
		t.Fatalf("Put to a dead member: %v", err)
	}
	if took := time.Since(begin); took < 250*time.Millisecond || took > time.Second {
		t.Errorf("Put failed after %v, want the 300 ms timeout", took)
	}
	r := kv.(*zkKV).eps[0].redial
	time.Sleep(time.Second)
	r.mu.Lock()
	dials := r.fails
	r.mu.Unlock()
	// 1.3 s of backoff from 100 ms (x1.6): about 6 dials, neither a busy loop nor one a second.
	if dials < 3 || dials > 12 {
		t.Errorf("%d dials in 1.3 s", dials)
	}
	begin = time.Now()
	kv.Close()
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("Close took %v", took)
	}
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before", n, before)
	}
}
