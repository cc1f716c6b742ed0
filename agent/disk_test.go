package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dtlab/dt/disk"
)

// TestDiskLayer mounts a disk layer through the API, puts rules in force and checks the
// probes' verdicts, empties it with a clean, cuts the power under it, and checks that
// the agent's shutdown unmounts it.
func TestDiskLayer(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the disk layer needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	a := startTestAgent(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(a.runDir, "data", "s1")
	store := filepath.Join(a.runDir, "data", "s1.disk")
	if _, err := a.MountDisk(ctx, "/etc", store); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("mount over /etc: %v, want a bad request", err)
	}
	if _, err := a.MountDisk(ctx, dir, filepath.Join(dir, "store")); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("store inside the data dir: %v", err)
	}
	st, err := a.MountDisk(ctx, dir, store)
	if err != nil || !st.Mounted {
		t.Fatalf("mount: %+v, %v", st, err)
	}
	if _, err := a.MountDisk(ctx, dir, store); !errors.Is(err, ErrConflict) {
		t.Fatalf("second mount: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := a.AddDiskRule(ctx, dir, disk.Rule{ID: "r1", Kind: disk.KindError, Errno: "EROFS", Ops: []string{"write", "create"}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Probes) != 4 {
		t.Fatalf("probes: %+v", res.Probes)
	}
	for _, p := range res.Probes {
		if p.Errno != "EROFS" {
			t.Errorf("probe %+v, want EROFS", p)
		}
	}
	if _, err := a.AddDiskRule(ctx, dir, disk.Rule{ID: "r1", Kind: disk.KindError, Errno: "EIO"}, 1); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate rule: %v", err)
	}
	if c, err := a.ClearDiskRule(ctx, dir, "r1"); err != nil || c.Hits != 4 {
		t.Errorf("clear: %+v, %v", c, err)
	}
	if _, err := a.ClearDiskRule(ctx, dir, "r1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("clear again: %v", err)
	}
	if err := a.CleanDir(ctx, dir); err != nil {
		t.Fatalf("clean a mounted data dir: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("after clean: %v", ents)
	}
	if err := os.WriteFile(filepath.Join(dir, "unsynced"), []byte("gone"), 0o644); err != nil {
		t.Fatal(err)
	}
	pl, err := a.PowerLoss(ctx, dir, "")
	if err != nil || !pl.Canary.Kept || !pl.Canary.Dropped {
		t.Fatalf("power loss: %+v, %v", pl, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "unsynced")); !os.IsNotExist(err) {
		t.Errorf("unsynced file after the power loss: %v", err)
	}
	a.stop()
	all, _ := disk.Mounts()
	for _, m := range all {
		if m.Point == dir {
			t.Errorf("still mounted after the agent's shutdown: %+v", m)
		}
	}
}
