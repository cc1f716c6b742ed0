package nsrun

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

func inode(t *testing.T, path string) string {
	t.Helper()
	l, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDoAndStartRunInsideAndComeBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (CI runs as root)")
	}
	name := "dtnsruntest"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	defer netns.DeleteNamed(name)
	self := inode(t, "/proc/self/ns/net")
	want := ""
	err := DoNamed(name, func() error {
		want = inode(t, "/proc/thread-self/ns/net")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("readlink", "/proc/self/ns/net")
	var out strings.Builder
	cmd.Stdout = &out
	if err := Start(name, cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != want || got == self {
		t.Errorf("child ran in %s, want the namespace %s (not ours, %s)", got, want, self)
	}
	if err := DoNamed("dt-no-such-namespace", func() error { return nil }); err == nil {
		t.Errorf("a missing namespace must be an error")
	}
}
