package systems

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRegistry(t *testing.T) {
	if got := Names(); !slices.Equal(got, []string{"etcd", "etcd-pre-vote", "zookeeper"}) {
		t.Fatalf("Names() = %v", got)
	}
	if _, err := Lookup("zk"); err == nil || !strings.Contains(err.Error(), "valid: etcd, etcd-pre-vote, zookeeper") {
		t.Fatalf("Lookup(zk) = %v; want an error listing the systems", err)
	}
	if err := Register(newEtcd("etcd", false)); err == nil {
		t.Fatal("registering etcd twice succeeded")
	}
	s, err := Lookup("etcd-pre-vote")
	if err != nil || s.Name() != "etcd-pre-vote" {
		t.Fatalf("Lookup(etcd-pre-vote) = %v, %v", s, err)
	}
}

func threeMembers() Cluster {
	return Cluster{
		Members: []Member{{"s1", "10.0.0.1"}, {"s2", "10.0.0.2"}, {"s3", "10.0.0.3"}},
		RunDir:  "/run/x",
		Token:   "tok",
	}
}

func TestEtcdMemberCommand(t *testing.T) {
	etcd, _ := Lookup("etcd")
	c := threeMembers()
	cmd := etcd.MemberCommand(c, 1, false)
	want := []string{
		"/usr/bin/etcd",
		"--name=s2",
		"--data-dir=/run/x/data/s2",
		"--listen-peer-urls=http://10.0.0.2:2380",
		"--initial-advertise-peer-urls=http://10.0.0.2:2380",
		"--listen-client-urls=http://10.0.0.2:2379,http://127.0.0.1:2379",
		"--advertise-client-urls=http://10.0.0.2:2379",
		"--initial-cluster=s1=http://10.0.0.1:2380,s2=http://10.0.0.2:2380,s3=http://10.0.0.3:2380",
		"--initial-cluster-token=tok",
		"--initial-cluster-state=new",
		"--election-timeout=1000",
		"--heartbeat-interval=100",
		"--pre-vote=false",
		"--logger=zap",
		"--log-outputs=stderr",
	}
	if !slices.Equal(cmd.Argv, want) {
		t.Fatalf("argv\n got %q\nwant %q", cmd.Argv, want)
	}
	if cmd.DataDir != "/run/x/data/s2" || cmd.Log != "/run/x/logs/s2.log" {
		t.Errorf("data dir %q, log %q", cmd.DataDir, cmd.Log)
	}

	has := func(cmd Command, flag string) bool { return slices.Contains(cmd.Argv, flag) }
	c.PreVote, c.FailureTimeout, c.Bin = true, 2.5, "/opt/etcd"
	cmd = etcd.MemberCommand(c, 0, true)
	for _, f := range []string{"/opt/etcd", "--pre-vote=true", "--election-timeout=2500", "--heartbeat-interval=250", "--initial-cluster-state=existing"} {
		if !has(cmd, f) {
			t.Errorf("argv %q lacks %s", cmd.Argv, f)
		}
	}

	preVote, _ := Lookup("etcd-pre-vote")
	if cmd := preVote.MemberCommand(threeMembers(), 0, false); !has(cmd, "--pre-vote=true") {
		t.Errorf("etcd-pre-vote argv %q lacks --pre-vote=true", cmd.Argv)
	}

	c = threeMembers()
	c.SharedNetns = true
	if cmd := etcd.MemberCommand(c, 2, false); !has(cmd, "--listen-client-urls=http://10.0.0.3:2379") {
		t.Errorf("shared netns argv %q still listens on 127.0.0.1", cmd.Argv)
	}
	if ep := etcd.LocalEndpoint(c, 2); ep != "http://10.0.0.3:2379" {
		t.Errorf("shared netns local endpoint %q", ep)
	}
	if ep := etcd.LocalEndpoint(threeMembers(), 2); ep != "http://127.0.0.1:2379" {
		t.Errorf("local endpoint %q", ep)
	}
}

func TestEtcdEndpointsAndEnv(t *testing.T) {
	etcd, _ := Lookup("etcd")
	c := threeMembers()
	eps := []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"}
	if got := etcd.ClientEndpoints(c); !slices.Equal(got, eps) {
		t.Errorf("ClientEndpoints = %v", got)
	}
	want := []string{"ETCDCTL_API=3", "ETCDCTL_ENDPOINTS=" + strings.Join(eps, ",")}
	if got := etcd.ClientEnv(c); !slices.Equal(got, want) {
		t.Errorf("ClientEnv = %v", got)
	}
}

// Status of an address where nothing listens fails fast, well inside its timeout.
func TestEtcdStatusUnreachable(t *testing.T) {
	etcd, _ := Lookup("etcd")
	defer CloseStatusConns()
	begin := time.Now()
	st, err := etcd.Status(context.Background(), "http://127.0.0.1:1")
	if err == nil || st.Healthy || st.Error == "" {
		t.Fatalf("Status of a closed port = %+v, %v", st, err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Status took %v", took)
	}
	if _, err := etcd.NewKV(nil, time.Second); err == nil {
		t.Error("NewKV with no endpoints succeeded")
	}
}
