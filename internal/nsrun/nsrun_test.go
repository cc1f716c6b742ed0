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

func TestNewAndNewNamedLeaveTheCallerWhereItWas(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (CI runs as root)")
	}
	self := inode(t, "/proc/self/ns/net")
	anon, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	name := "dtnsrunnewtest"
	named, err := NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	defer netns.DeleteNamed(name)
	defer named.Close()
	if _, err := NewNamed(name); err == nil {
		t.Errorf("a second namespace named %s must be an error", name)
	}
	// Every thread of the process is still in our namespace (a leaked one would run
	// later goroutines in the new namespace).
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if got := inode(t, "/proc/self/task/"+task.Name()+"/ns/net"); got != self {
			t.Errorf("thread %s is in %s, want ours %s", task.Name(), got, self)
		}
	}
	var inAnon, inNamed string
	if err := Do(anon, func() error { inAnon = inode(t, "/proc/thread-self/ns/net"); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := DoNamed(name, func() error { inNamed = inode(t, "/proc/thread-self/ns/net"); return nil }); err != nil {
		t.Fatal(err)
	}
	if inAnon == self || inNamed == self || inAnon == inNamed {
		t.Errorf("namespaces: ours %s, anonymous %s, named %s: want three different ones", self, inAnon, inNamed)
	}
}
