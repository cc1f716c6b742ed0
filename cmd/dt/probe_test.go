package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/probe"
)

// TestProbeEtcdFlags: `dt probe etcd` names what is missing or wrong before it serves.
func TestProbeEtcdFlags(t *testing.T) {
	t.Setenv(probe.EnvEndpoints, "")
	os.Unsetenv(probe.EnvEndpoints)
	for _, tc := range []struct {
		env  string // "" = unset
		args []string
		want string
	}{
		{"", nil, "no endpoints: give --endpoints URL,URL or set DT_ENDPOINTS"},
		{" , ", nil, "no endpoints: give --endpoints URL,URL or set DT_ENDPOINTS"},
		{"", []string{"--endpoints", ""}, "--endpoints is empty"},
		{"http://127.0.0.1:2379", []string{"--endpoints", ","}, "--endpoints is empty"},
		{"", []string{"--endpoints", "http://127.0.0.1:2379,not an endpoint"}, `--endpoints: "not an endpoint" is not an endpoint`},
		{"", []string{"--endpoints", "--listen"}, `"--listen" is not an endpoint`},
		{"http://127.0.0.1:2379", []string{"--listen", "nowhere"}, "--listen nowhere"},
		{"", []string{"extra"}, `unknown command "extra"`},
	} {
		if tc.env != "" {
			os.Setenv(probe.EnvEndpoints, tc.env)
		} else {
			os.Unsetenv(probe.EnvEndpoints)
		}
		_, err := execInProcess(context.Background(), append([]string{"probe", "etcd"}, tc.args...), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DT_ENDPOINTS=%q dt probe etcd %q: error %v, want one containing %q", tc.env, tc.args, err, tc.want)
		}
	}
}

// TestProbeEtcdServes: with the endpoints from $DT_ENDPOINTS, dt probe etcd prints its
// one line, answers GET /check (503 here: nothing listens at the endpoint) and returns
// when its context ends, as on SIGINT.
func TestProbeEtcdServes(t *testing.T) {
	t.Setenv(probe.EnvEndpoints, "http://127.0.0.1:1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		_, err := execInProcess(ctx, []string{"probe", "etcd", "--listen", "127.0.0.1:0"}, out)
		done <- err
	}()
	line := regexp.MustCompile(`^probe: serving GET (http://127\.0\.0\.1:\d+/check) against http://127\.0\.0\.1:1\n$`)
	var url string
	for deadline := time.Now().Add(5 * time.Second); url == ""; time.Sleep(10 * time.Millisecond) {
		if m := line.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no start line; output %q", out.String())
		}
	}
	resp, err := http.Get(url + "?timeout=200ms")
	if err != nil {
		t.Fatal(err)
	}
	var res probe.EtcdResult
	err = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || res.OK || res.Error == "" {
		t.Errorf("GET /check against a dead endpoint: %d %+v %v", resp.StatusCode, res, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dt probe etcd after its context ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dt probe etcd did not return when its context ended")
	}
}

// execInProcess runs the dt command line args in this process.
func execInProcess(ctx context.Context, args []string, out *lockedBuffer) (string, error) {
	if out == nil {
		out = &lockedBuffer{}
	}
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(out)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}
