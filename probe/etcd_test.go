package probe

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/systems/systemstest"
)

// TestEtcdCheck runs the check against a real single-member etcd on a loopback address:
// 200 while it is healthy, 503 while it is paused (SIGSTOP) and after it is killed.
func TestEtcdCheck(t *testing.T) {
	sys, err := systems.Lookup("etcd")
	if err != nil {
		t.Fatal(err)
	}
	lc := systemstest.Start(t, sys, 1, nil) // skips when /usr/bin/etcd is not installed
	lc.MustWaitLeader(60 * time.Second)
	srv := httptest.NewServer(EtcdCheck(lc.Endpoints()))
	defer srv.Close()

	t.Run("healthy", func(t *testing.T) {
		a := get(t, srv.URL+"/check", http.StatusOK)
		if !a.OK || a.Error != "" || a.Revision <= 0 || a.MemberID == "" || a.RaftTerm == 0 || a.WriteMs <= 0 || a.ReadMs <= 0 ||
			!strings.HasPrefix(a.Key, "dt-probe/") {
			t.Fatalf("check of a healthy member: %+v", a)
		}
		b := get(t, srv.URL+"/check?timeout=1s", http.StatusOK)
		if b.Key == a.Key || b.Revision <= a.Revision || b.MemberID != a.MemberID {
			t.Errorf("second check %+v after %+v: want a new key at a later revision on the same member", b, a)
		}
		t.Logf("healthy: %+v", b)
	})

	t.Run("paused", func(t *testing.T) {
		pid := childPid(t, lc.Argv(0))
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		continued := false
		resume := func() {
			if !continued {
				continued = true
				if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
					t.Errorf("SIGCONT %d: %v", pid, err)
				}
			}
		}
		defer resume()
		start := time.Now()
		a := get(t, srv.URL+"/check?timeout=500ms", http.StatusServiceUnavailable)
		if took := time.Since(start); a.OK || !strings.HasPrefix(a.Error, "write: ") || took > 3*time.Second {
			t.Fatalf("check of a paused member, 500ms timeout: %+v after %v", a, took)
		}
		t.Logf("paused: %+v", a)
		resume()
		waitOK(t, srv.URL+"/check?timeout=500ms", 10*time.Second)
	})

	t.Run("stopped", func(t *testing.T) {
		lc.Kill(0)
		a := get(t, srv.URL+"/check?timeout=500ms", http.StatusServiceUnavailable)
		if a.OK || a.Error == "" {
			t.Fatalf("check of a killed member: %+v", a)
		}
		t.Logf("stopped: %+v", a)
	})
}

// TestEtcdCheckRequests: the requests the handler refuses, with no etcd behind it.
func TestEtcdCheckRequests(t *testing.T) {
	srv := httptest.NewServer(EtcdCheck([]string{"http://127.0.0.1:1"}))
	defer srv.Close()
	for _, q := range []string{"soon", "0s", "-1s", "1h"} {
		a := get(t, srv.URL+"/check?timeout="+q, http.StatusBadRequest)
		if !strings.Contains(a.Error, "timeout") {
			t.Errorf("?timeout=%s: %+v", q, a)
		}
	}
	resp, err := http.Post(srv.URL+"/check", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /check: %d, want 405", resp.StatusCode)
	}
}

// get fetches url, wants status code and decodes the JSON answer.
func get(t *testing.T, url string, code int) EtcdResult {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res EtcdResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatalf("GET %s: %d, body not JSON: %v", url, resp.StatusCode, err)
	}
	if resp.StatusCode != code {
		t.Fatalf("GET %s: %d %+v, want %d", url, resp.StatusCode, res, code)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", url, ct)
	}
	return res
}

// waitOK polls url until it answers 200.
func waitOK(t *testing.T, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within %v (last: %v %v)", url, within, resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// childPid finds the child of this test process whose command line is argv (systemstest
// starts members from here and keeps their pids to itself).
func childPid(t *testing.T, argv []string) int {
	t.Helper()
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(field)
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if slices.Equal(strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00"), argv) {
				return pid
			}
		}
	}
	t.Fatalf("no child process runs %v", argv)
	return 0
}
