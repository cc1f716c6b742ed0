package systems_test

import (
	"context"
	"go/format"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dtlab/dt/systems"
)

func TestParseEtcdRelease(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "3.6.16", want: "v3.6.16"},
		{in: "v3.5.17", want: "v3.5.17"},
		{in: "3.7.0-rc.0", want: "v3.7.0-rc.0"},
		{in: "3.5.0", want: "v3.5.0"},
		{in: "3.4.23", err: "3.4 is Debian's default"},
		{in: "2.3.8", err: "3.5.0 or newer"},
		{in: "4.0.0", err: "3.5.0 or newer"},
		{in: "3.6", err: "MAJOR.MINOR.PATCH"},
		{in: "latest", err: "MAJOR.MINOR.PATCH"},
		{in: "3.06.1", err: "MAJOR.MINOR.PATCH"},
		{in: "", err: "MAJOR.MINOR.PATCH"},
	} {
		r, err := systems.ParseEtcdRelease(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err == "" && r.String() != tc.want:
			t.Errorf("%q: %s, want %s", tc.in, r, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.err)
		}
	}
}

// The wrapper is the whole module: main calls etcdmain.Main(os.Args), go.mod requires
// server/v3 at the version, and it is valid Go (gofmt parses it).
func TestEtcdWrapper(t *testing.T) {
	r, err := systems.ParseEtcdRelease("3.6.16")
	if err != nil {
		t.Fatal(err)
	}
	mainGo, goMod := systems.EtcdWrapper(r)
	for _, want := range []string{"package main", `"go.etcd.io/etcd/server/v3/etcdmain"`, "etcdmain.Main(os.Args)"} {
		if !strings.Contains(string(mainGo), want) {
			t.Errorf("main.go lacks %q:\n%s", want, mainGo)
		}
	}
	if !strings.Contains(string(goMod), "require go.etcd.io/etcd/server/v3 v3.6.16\n") || !strings.HasPrefix(string(goMod), "module ") {
		t.Errorf("go.mod:\n%s", goMod)
	}
	if f, err := format.Source(mainGo); err != nil || string(f) != string(mainGo) {
		t.Errorf("generated main.go is not gofmt'ed Go: %v\n%s", err, mainGo)
	}
	t.Setenv("XDG_CACHE_HOME", "/cache")
	if d, err := systems.EtcdCacheDir(r); err != nil || d != "/cache/dt/etcd/v3.6.16" {
		t.Errorf("cache dir %q %v", d, err)
	}
}

func TestEtcdOptions(t *testing.T) {
	e := lookup(t, "etcd")
	for _, tc := range []struct {
		opts map[string]string
		bin  string // Cluster.Bin before
		want systems.Cluster
		err  string
	}{
		{opts: map[string]string{"version": "3.6.16"}, want: systems.Cluster{Version: "v3.6.16"}},
		{opts: map[string]string{"bin": "/opt/etcd", "pre-vote": "true"}, want: systems.Cluster{Bin: "/opt/etcd", PreVote: true}},
		{opts: map[string]string{"versoin": "3.6.16"}, err: "--system-opt versoin: unknown key; valid: version, bin, pre-vote"},
		{opts: map[string]string{"version": "3.4.23"}, err: "--system-opt version: etcd version \"3.4.23\""},
		{opts: map[string]string{"pre-vote": "yes"}, err: "want true or false"},
		{opts: map[string]string{"version": "3.6.16"}, bin: "/usr/bin/etcd", err: "give one"},
		{opts: map[string]string{"version": "3.6.16", "bin": "/x"}, err: "give one"},
	} {
		c := systems.Cluster{Bin: tc.bin}
		err := systems.SetOptions(e, &c, tc.opts)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%v: %v", tc.opts, err)
		case tc.err == "" && (c.Bin != tc.want.Bin || c.Version != tc.want.Version || c.PreVote != tc.want.PreVote):
			t.Errorf("%v: %+v, want %+v", tc.opts, c, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: error %v, want one containing %q", tc.opts, err, tc.err)
		}
	}
	if err := systems.SetOptions(lookup(t, "zookeeper"), &systems.Cluster{}, map[string]string{"version": "3.8"}); err == nil ||
		!strings.Contains(err.Error(), "takes no options") {
		t.Errorf("zookeeper with an option: %v", err)
	}
}

// A cached release is used as it is: no build, no progress line.
func TestEtcdBinaryCached(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	r, _ := systems.ParseEtcdRelease("3.6.16")
	dir, err := systems.EtcdCacheDir(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "etcd")
	if err := os.WriteFile(want, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	bin, err := systems.EtcdBinary(context.Background(), r, &progress)
	if err != nil || bin != want || progress.Len() != 0 {
		t.Errorf("cached: %q %v, progress %q", bin, err, progress.String())
	}
}
