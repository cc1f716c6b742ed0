package layer

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dtlab/dt/disk"
)

// mountTest mounts a layer in a fresh directory under /tmp and unmounts it at the end,
// checking that nothing of it is left in /proc/self/mountinfo.
func mountTest(t *testing.T) *Layer {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("the disk layer needs root (mount(2) of a FUSE filesystem)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	dir, err := os.MkdirTemp("/tmp", "dtrt-")
	if err != nil {
		t.Fatal(err)
	}
	runID := "d15c00"
	l, err := Mount(Options{Mountpoint: filepath.Join(dir, "data", "s1"), Backing: filepath.Join(dir, "data", "s1.disk", "files"),
		Trash: filepath.Join(dir, "data", "s1.disk", "trash"), RunID: runID, Node: "s1"})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if ms, _ := disk.RunMounts(runID, dir); len(ms) > 0 {
			t.Errorf("stale mounts after close: %v", ms)
		}
		if b, _ := os.ReadFile("/proc/mounts"); bytes.Contains(b, []byte(dir)) {
			t.Errorf("/proc/mounts still lists %s", dir)
		}
		os.RemoveAll(dir)
	})
	return l
}

func TestPassthrough(t *testing.T) {
	l := mountTest(t)
	mp := l.Mountpoint()
	if ms, _ := disk.Mounts(); !containsPoint(ms, mp) {
		t.Fatalf("%s not in mountinfo as %s: %v", mp, disk.FSType, ms)
	}
	if err := os.MkdirAll(filepath.Join(mp, "member", "wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(mp, "member", "wal", "0.wal")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(l.Backing(), "member", "wal", "0.wal")); err != nil || string(b) != "hello" {
		t.Fatalf("backing file: %q, %v", b, err)
	}
	if err := os.Rename(p, p+".renamed"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p + ".renamed"); err != nil || string(b) != "hello" {
		t.Fatalf("read back: %q, %v", b, err)
	}
}

func TestErrorRule(t *testing.T) {
	l := mountTest(t)
	mp := l.Mountpoint()
	if err := os.MkdirAll(filepath.Join(mp, "member", "wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.AddRule(disk.Rule{ID: "e1", Kind: disk.KindError, Errno: "EIO", Ops: []string{"fsync"}, Path: "*.wal"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(mp, "member", "wal", "1.wal"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("x"); err != nil {
		t.Fatalf("write (not a ruled op): %v", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync of a .wal: %v, want EIO", err)
	}
	other, err := os.Create(filepath.Join(mp, "member", "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Sync(); err != nil {
		t.Fatalf("fsync of a file the glob does not match: %v", err)
	}
	for _, r := range l.Probe(disk.OpFsync, "*.wal", 3) {
		if r.Errno != "EIO" || r.Setup != "" {
			t.Errorf("probe: %+v, want EIO", r)
		}
	}
	if r := l.Probe(disk.OpWrite, "*.wal", 1)[0]; r.Errno != "ok" {
		t.Errorf("write probe under an fsync rule: %+v", r)
	}
	if hits, ok := l.RemoveRule("e1"); !ok || hits < 4 {
		t.Errorf("remove: %d hits, %v", hits, ok)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync after the rule is gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.Backing(), probeDir)); !os.IsNotExist(err) {
		t.Errorf("probe files left behind: %v", err)
	}
}

func TestSlowAndFull(t *testing.T) {
	l := mountTest(t)
	mp := l.Mountpoint()
	base := l.Probe(disk.OpWrite, "", 3)
	if err := l.AddRule(disk.Rule{ID: "s1", Kind: disk.KindSlow, Delay: 50 * time.Millisecond, Ops: []string{"write"}}); err != nil {
		t.Fatal(err)
	}
	slow := l.Probe(disk.OpWrite, "", 3)
	for i := range slow {
		added := slow[i].Seconds - base[i].Seconds
		if added < 0.045 || added > 0.5 {
			t.Errorf("probe %d: %.1f ms added, want ~50", i, added*1000)
		}
	}
	l.RemoveRule("s1")

	if err := l.AddRule(disk.Rule{ID: "f1", Kind: disk.KindFull, Bytes: 10000}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(mp, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Write(make([]byte, 16384))
	if n != 10000 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write 16 KiB with 10000 bytes left: %d, %v; want 10000, ENOSPC", n, err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(mp, &st); err != nil || st.Bavail != 0 {
		t.Errorf("statfs of a full disk: %d blocks available, %v", st.Bavail, err)
	}
	if _, err := os.Create(filepath.Join(mp, "new")); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("create on a full disk: %v", err)
	}
	l.RemoveRule("f1")
	if _, err := f.Write([]byte("more")); err != nil {
		t.Errorf("write after the disk was freed: %v", err)
	}
}

// TestPowerLoss writes with and without fsync through the mount, cuts the power and
// reads back: what was synced stays, the rest goes.
func TestPowerLoss(t *testing.T) {
	l := mountTest(t)
	mp := l.Mountpoint()
	dir := filepath.Join(mp, "d")
	must(t, os.Mkdir(dir, 0o755))
	must(t, syncPath(mp))

	write := func(name, content string, sync bool) {
		t.Helper()
		f, err := os.Create(filepath.Join(dir, name))
		must(t, err)
		defer f.Close()
		_, err = f.WriteString(content)
		must(t, err)
		if sync {
			must(t, f.Sync())
		}
	}
	// Synced files (an fsync makes a new file's entry durable too).
	write("a", "0123456789", true)
	write("c", "keep all of me", true)
	write("d", "removed", true)
	write("e.tmp", "renamed", true)
	// b: its entry synced with the directory, its data never.
	write("b", "unsynced data", false)
	must(t, syncPath(dir))

	// Then, without another sync of d: a overwritten in the middle and appended to, c
	// truncated, d removed, e.tmp renamed, g new and never synced, f new and synced.
	a, err := os.OpenFile(filepath.Join(dir, "a"), os.O_WRONLY, 0)
	must(t, err)
	_, err = a.WriteAt([]byte("XXXX"), 3)
	must(t, err)
	_, err = a.WriteAt([]byte("tail"), 10)
	must(t, err)
	a.Close()
	must(t, os.Truncate(filepath.Join(dir, "c"), 4))
	must(t, os.Remove(filepath.Join(dir, "d")))
	must(t, os.Rename(filepath.Join(dir, "e.tmp"), filepath.Join(dir, "e")))
	write("g", "never synced", false)
	write("f", "durable", true)

	if p := l.Status().Pending; p.Files == 0 || p.Entries == 0 {
		t.Fatalf("pending before the cut: %+v", p)
	}
	rep, canary, err := l.PowerLoss(disk.PowerStrict)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %s; %s", rep, canary.Detail)
	if !canary.Kept || !canary.Dropped {
		t.Errorf("canary: %+v", canary)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	for name, want := range map[string]string{"a": "0123456789", "b": "", "c": "keep all of me", "d": "removed", "e.tmp": "renamed", "f": "durable"} {
		if got := read(name); got != want {
			t.Errorf("%s after the cut: %q, want %q", name, got, want)
		}
	}
	for _, gone := range []string{"e", "g"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s after the cut: %v, want it gone", gone, err)
		}
	}
	if p := l.Status().Pending; p != (disk.Pending{}) {
		t.Errorf("pending after the cut: %+v", p)
	}
	if ents, _ := os.ReadDir(mp); len(ents) != 1 {
		t.Errorf("mount root after the cut holds %v, want only d", ents)
	}
}

func TestCorrupt(t *testing.T) {
	l := mountTest(t)
	mp := l.Mountpoint()
	must(t, os.MkdirAll(filepath.Join(mp, "member", "wal"), 0o755))
	orig := bytes.Repeat([]byte("record "), 1000)
	padded := append(append([]byte{}, orig...), make([]byte, 8192)...)
	must(t, os.WriteFile(filepath.Join(mp, "member", "wal", "0.wal"), []byte("old"), 0o644))
	time.Sleep(10 * time.Millisecond)
	must(t, os.WriteFile(filepath.Join(mp, "member", "wal", "1.wal"), padded, 0o644))
	// Read it through the mount so that the kernel caches it: corruption must show anyway.
	if b, err := os.ReadFile(filepath.Join(mp, "member", "wal", "1.wal")); err != nil || !bytes.Equal(b, padded) {
		t.Fatalf("read: %v", err)
	}
	rep, err := l.Corrupt(disk.Corruption{Glob: "member/wal/*.wal", Mode: disk.CorruptFlip, Bytes: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.File != "member/wal/1.wal" || rep.Content != int64(len(orig)) || len(rep.Offsets) != 3 {
		t.Fatalf("report: %+v", rep)
	}
	b, err := os.ReadFile(filepath.Join(mp, "member", "wal", "1.wal"))
	must(t, err)
	diff := 0
	for i := range b {
		if b[i] != padded[i] {
			diff++
		}
	}
	if diff != 3 {
		t.Errorf("%d bytes differ through the mount, want 3 (%s)", diff, rep)
	}
	rep, err = l.Corrupt(disk.Corruption{Glob: "member/wal/*.wal", Mode: disk.CorruptTruncate, Bytes: 100, Seed: 1})
	must(t, err)
	b, _ = os.ReadFile(filepath.Join(mp, "member", "wal", "1.wal"))
	if len(b) != len(padded) || !bytes.Equal(b[len(orig)-100:], make([]byte, len(b)-len(orig)+100)) {
		t.Errorf("truncate: %s; content end now %d", rep, bytes.LastIndexFunc(b, func(r rune) bool { return r != 0 })+1)
	}
}

// TestStaleMountCleanup kills a process serving a layer (the agent's kill -9) and
// checks that DetachRun removes the mount it leaves behind.
func TestStaleMountCleanup(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	if os.Getenv("DT_LAYER_CHILD") != "" {
		l, err := Mount(Options{Mountpoint: os.Getenv("DT_LAYER_MP"), Backing: os.Getenv("DT_LAYER_MP") + ".disk/files",
			Trash: os.Getenv("DT_LAYER_MP") + ".disk/trash", RunID: "5ta1e0", Node: "s9"})
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(3)
		}
		_ = l
		os.Stdout.WriteString("mounted\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("/tmp", "dtrt-")
	must(t, err)
	defer os.RemoveAll(dir)
	mp := filepath.Join(dir, "s9")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestStaleMountCleanup$")
	cmd.Env = append(os.Environ(), "DT_LAYER_CHILD=1", "DT_LAYER_MP="+mp)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "mounted") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not mount: %q", buf[:n])
	}
	must(t, cmd.Process.Kill())
	cmd.Wait()
	ms, _ := disk.RunMounts("5ta1e0", dir)
	if len(ms) != 1 {
		t.Fatalf("mounts of the killed server: %v", ms)
	}
	if _, err := os.Stat(mp); err == nil {
		t.Logf("stat of the dead mount did not fail")
	} else {
		t.Logf("stat of the dead mount: %v", err)
	}
	done, err := disk.DetachRun("5ta1e0", dir)
	if err != nil || len(done) != 1 {
		t.Fatalf("detach: %v, %v", done, err)
	}
	if ms, _ := disk.RunMounts("5ta1e0", ""); len(ms) != 0 {
		t.Fatalf("left: %v", ms)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatalf("remove the run's dir after the detach: %v", err)
	}
}

func containsPoint(ms []disk.Mount, p string) bool {
	for _, m := range ms {
		if m.Point == p {
			return true
		}
	}
	return false
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func syncPath(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// TestCreateThenRemoveLeavesNothing: a file created and removed again since the last
// sync (etcd's .touch) is nothing to undo.
func TestCreateThenRemoveLeavesNothing(t *testing.T) {
	l := mountTest(t)
	p := filepath.Join(l.Mountpoint(), ".touch")
	must(t, os.WriteFile(p, []byte("x"), 0o644))
	must(t, os.Remove(p))
	must(t, os.Mkdir(p+"dir", 0o755))
	must(t, syscall.Rmdir(p+"dir"))
	if pend := l.Status().Pending; pend.Entries != 0 || pend.Files != 0 {
		t.Errorf("pending: %+v", pend)
	}
}

// TestPowerLossModels: a directory made and never synced, then an fsync of an unrelated
// file: a strict cut loses the directory, an ordered one (ext4's journal) keeps it.
func TestPowerLossModels(t *testing.T) {
	for model, kept := range map[string]bool{disk.PowerStrict: false, disk.PowerOrdered: true} {
		t.Run(model, func(t *testing.T) {
			l := mountTest(t)
			mp := l.Mountpoint()
			must(t, os.Mkdir(filepath.Join(mp, "version-2"), 0o755))
			f, err := os.Create(filepath.Join(mp, "other"))
			must(t, err)
			must(t, f.Sync())
			f.Close()
			must(t, os.WriteFile(filepath.Join(mp, "late"), []byte("after the last fsync"), 0o644))
			_, c, err := l.PowerLoss(model)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Kept || !c.Dropped {
				t.Errorf("%s: canary %+v", model, c)
			}
			_, err = os.Stat(filepath.Join(mp, "version-2"))
			if got := err == nil; got != kept {
				t.Errorf("%s: version-2 kept %v, want %v", model, got, kept)
			}
			if _, err := os.Stat(filepath.Join(mp, "late")); !os.IsNotExist(err) {
				t.Errorf("%s: an entry made after the last fsync survived: %v", model, err)
			}
		})
	}
}
