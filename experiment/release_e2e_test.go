package experiment

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

// releaseVersion is the one etcd release the end-to-end test builds: the build takes a
// minute or more the first time (module downloads), seconds once the module cache has it,
// nothing once os.UserCacheDir()/dt/etcd/v3.6.16/etcd exists.
const releaseVersion = "3.6.16"

// TestEtcdReleaseLeaderKill builds etcd 3.6.16 from the Go module proxy (unless cached),
// runs a short leader run on it, and checks that config.json says 3.6.16 ran and that a
// new leader was recorded after the kill. Part of make test, but slow on a cold cache.
func TestEtcdReleaseLeaderKill(t *testing.T) {
	needCluster(t)
	if testing.Short() {
		t.Skip("-short: builds etcd " + releaseVersion + " from the Go module proxy")
	}
	cfg := testConfig(t, "leader", 8)
	cfg.SystemOpts = map[string]string{"version": releaseVersion}
	var progress strings.Builder
	start := time.Now()
	out, err := Run(context.Background(), cfg, Options{Exe: dtBin, Progress: &progress})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	t.Logf("run (build included) %.1f s; progress:\n%s", time.Since(start).Seconds(), progress.String())
	assertNothingLeft(t, out.RunID)

	b, err := os.ReadFile(filepath.Join(out.RunDir, records.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		SystemVersion string            `json:"system_version"`
		SystemBin     string            `json:"system_bin"`
		Versions      map[string]string `json:"versions"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.SystemVersion != "v"+releaseVersion || conf.Versions["etcd"] != "etcd Version: "+releaseVersion {
		t.Errorf("config.json: system_version %q, versions.etcd %q: want v%s and etcd Version: %s",
			conf.SystemVersion, conf.Versions["etcd"], releaseVersion, releaseVersion)
	}
	if !strings.HasSuffix(conf.SystemBin, filepath.Join("dt", "etcd", "v"+releaseVersion, "etcd")) {
		t.Errorf("config.json system_bin %q: want the cached build", conf.SystemBin)
	}

	run, err := records.Load(out.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	ready, ok := firstEvent(run.Events, records.EventClusterReady)
	if !ok || ready.Leader == "" {
		t.Fatalf("no cluster-ready with a leader: %+v", run.Events)
	}
	fs, ok := firstEvent(run.Events, records.EventFaultStart)
	if !ok || len(fs.Targets) != 1 {
		t.Fatalf("no fault-start with one target: %+v", run.Events)
	}
	killed := fs.Targets[0]
	newLeader, newTerm, newAt := "", uint64(0), 0.0
	for _, e := range run.Events {
		if e.T > fs.T && e.Type == records.EventLeader && e.Leader != "" && e.Leader != killed {
			newLeader, newTerm, newAt = e.Leader, e.Term, e.T
			break
		}
	}
	if newLeader == "" || newTerm <= ready.Term {
		t.Fatalf("after killing %s (term %d): new leader %q term %d", killed, ready.Term, newLeader, newTerm)
	}
	if s := out.Summary; s == nil || s.Linearizability.Result != "ok" {
		t.Errorf("linearizability: %+v", out.Summary)
	}
	t.Logf("etcd %s: leader %s killed at %.2f s, %s elected at term %d %.2f s later",
		releaseVersion, killed, fs.T, newLeader, newTerm, newAt-fs.T)
}
