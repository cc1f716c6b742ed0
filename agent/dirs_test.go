package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		root, p string
		want    bool
	}{
		{"/run/dt", "/run/dt/a", true},
		{"/run/dt", "/run/dt/a/b/c", true},
		{"/run/dt", "/run/dt", false},
		{"/run/dt", "/run", false},
		{"/run/dt", "/run/dtx", false},
		{"/run/dt", "/run/dt/../x", false}, // callers clean first; Rel sees ../x
		{"/run/dt", "/run/dt/..foo", true}, // a name starting with dots is still inside
		{"/run/dt", "/etc/passwd", false},
	} {
		if got := within(tc.root, filepath.Clean(tc.p)); got != tc.want {
			t.Errorf("within(%q, %q) = %v, want %v", tc.root, tc.p, got, tc.want)
		}
	}
}

func TestBackupAndClean(t *testing.T) {
	a := startTestAgent(t, nil)
	ctx := ctxT(t)
	root := a.srv.dirs.root
	data := filepath.Join(root, "s1", "data")
	mustWrite(t, filepath.Join(data, "member", "wal", "0.wal"), "wal bytes", 0o600)
	mustWrite(t, filepath.Join(data, "member", "snap", "db"), "db bytes!", 0o644)
	if err := os.Symlink("wal/0.wal", filepath.Join(data, "member", "link")); err != nil {
		t.Fatal(err)
	}

	backup := filepath.Join(root, "backups", "s1-1")
	if err := a.BackupDir(ctx, data, backup); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"member/wal/0.wal": "wal bytes", "member/snap/db": "db bytes!", "member/link": "wal bytes"} {
		b, err := os.ReadFile(filepath.Join(backup, path))
		if err != nil || string(b) != want {
			t.Errorf("backup %s = %q, %v; want %q", path, b, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(backup, "member", "wal", "0.wal")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup lost the file mode: %v, %v", fi.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(backup, "member", "link")); err != nil || l != "wal/0.wal" {
		t.Errorf("symlink copied as %q, %v", l, err)
	}

	// Outside the run dir, relative, escaping through a symlink, into itself, clashing.
	outside := t.TempDir()
	escape := filepath.Join(root, "escape")
	if err := os.Symlink(outside, escape); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		src, dst string
		code     int
	}{
		{"src outside", outside, filepath.Join(root, "b1"), 400},
		{"dst outside", data, filepath.Join(outside, "b"), 400},
		{"relative src", "s1/data", filepath.Join(root, "b2"), 400},
		{"dotdot src", root + "/../x", filepath.Join(root, "b3"), 400},
		{"dst through symlink", data, filepath.Join(escape, "b"), 400},
		{"dst inside src", data, filepath.Join(data, "b"), 400},
		{"run dir itself", root, filepath.Join(root, "b4"), 400},
		{"src missing", filepath.Join(root, "nope"), filepath.Join(root, "b5"), 404},
		{"dst exists", data, backup, 409},
	} {
		t.Run("backup "+tc.name, func(t *testing.T) { wantStatus(t, a.BackupDir(ctx, tc.src, tc.dst), tc.code) })
	}
	for _, tc := range []struct {
		name, path string
	}{
		{"outside", outside},
		{"relative", "s1"},
		{"empty", ""},
		{"run dir itself", root},
		{"through symlink", filepath.Join(escape, "x")},
		{"holds the socket", filepath.Dir(a.socket)},
		{"root", "/"},
	} {
		t.Run("clean "+tc.name, func(t *testing.T) { wantStatus(t, a.CleanDir(ctx, tc.path), 400) })
	}
	if _, err := os.Stat(outside); err != nil {
		t.Fatalf("a refused clean touched %s: %v", outside, err)
	}

	if err := a.CleanDir(ctx, data); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after clean: %v", data, err)
	}
	if err := a.CleanDir(ctx, data); err != nil {
		t.Errorf("clean of a missing dir: %v", err)
	}
	// The symlink itself is inside: cleaning it removes the link, not its target.
	if err := a.CleanDir(ctx, escape); err != nil {
		t.Errorf("clean of a symlink inside the run dir: %v", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("cleaning a symlink removed its target: %v", err)
	}
}

func mustWrite(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}
