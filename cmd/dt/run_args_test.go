package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runDT runs the CLI in-process and returns its error.
func runDT(args ...string) error {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&lockedBuffer{})
	root.SetErr(&lockedBuffer{})
	return root.Execute()
}

// TestRunTimelineArguments: the ways of giving dt run its faults are checked before
// anything runs, and each mistake is named.
func TestRunTimelineArguments(t *testing.T) {
	dir := t.TempDir()
	sc := filepath.Join(dir, "s.yaml")
	os.WriteFile(sc, []byte("system: etcd\ntopology: simple\nduration: 10s\noptions:\n  rate: 50\n  colour: blue\nsteps:\n  - action: pause\n    targets: leader\n"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "-f", sc, "extra"}, "give no other arguments"},
		{[]string{"run", "etcd", "simple", "uniform", "--schedule", "random", "--replay", "x.json"}, "give one"},
		{[]string{"run", "etcd", "simple", "uniform", "leader", "--schedule", "random"}, "no FAULT"},
		{[]string{"run", "etcd", "simple", "uniform", "--schedule", "chaos"}, "valid are random"},
		{[]string{"run", "etcd", "simple", "uniform", "--replay", filepath.Join(dir, "missing.json")}, "missing.json"},
		{[]string{"run", "etcd", "simple", "uniform", "--schedule", "random", "--faults", "kill,meteor"}, `"meteor"`},
		{[]string{"run", "-f", sc}, `s.yaml:6: options: unknown option "colour"`},
		{[]string{"run", "etcd", "simple", "uniform"}, "accepts 4 arg(s)"},
	}
	for _, tc := range cases {
		err := runDT(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dt %s: %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
