package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/internal/nsrun"
)

// TestProbeFromInsideNamespace: an agent in a namespace of its own probes an HTTP server
// that listens on the node's own address, which exists only inside that namespace. The
// server sees the request come from that address, so the agent made it from inside;
// then a failing status, a truncated body, a refused port, an unreachable address, and
// the requests the agent refuses.
func TestProbeFromInsideNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (CI runs as root)")
	}
	name := fmt.Sprintf("dtagprobe-%d", os.Getpid())
	newNamedNetns(t, name)
	// The node's interface: a veth whose both ends are in the namespace (this kernel has
	// no dummy device), so nothing it sends leaves the namespace.
	nodeIP := fmt.Sprintf("10.213.%d.1", os.Getpid()%250)
	deadIP := fmt.Sprintf("10.213.%d.99", os.Getpid()%250) // on the subnet, nobody there
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"},
		{"addr", "add", nodeIP + "/24", "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"link", "set", "eth0p", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %v: %v\n%s", name, args, err, out)
		}
	}
	// The host has no such address: nothing on the host can reach, or be, nodeIP.
	if addrs, err := net.InterfaceAddrs(); err != nil {
		t.Fatal(err)
	} else {
		for _, a := range addrs {
			if strings.HasPrefix(a.String(), nodeIP+"/") {
				t.Fatalf("the host itself has %s; pick another test subnet", a)
			}
		}
	}

	// The probed server runs in this process, but its listening socket is opened inside
	// the namespace, on the node's address only.
	ln := listenIn(t, name, nodeIP)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /where", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.RemoteAddr) })
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "member s1 is unhealthy", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, strings.Repeat("x", 3*MaxProbeBody)) })
	mux.HandleFunc("GET /moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/where", http.StatusFound) })
	mux.HandleFunc("POST /where", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "posted") })
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	base := "http://" + ln.Addr().String()
	// A port on the node's address that nothing listens on.
	closed := listenIn(t, name, nodeIP)
	refusedURL := "http://" + closed.Addr().String() + "/check"
	closed.Close()

	o := launchOpts(t, "s1")
	o.Netns = name
	c := launch(t, o).Client()
	ctx := ctxT(t)

	t.Run("from inside", func(t *testing.T) {
		res, err := c.Probe(ctx, ProbeRequest{URL: base + "/where"})
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() || res.Status != 200 || res.URL != base+"/where" || res.Seconds <= 0 || res.Seconds > 5 {
			t.Fatalf("probe: %+v", res)
		}
		host, _, err := net.SplitHostPort(res.Body)
		if err != nil || host != nodeIP {
			t.Fatalf("the server saw the request come from %q, want the node's own address %s", res.Body, nodeIP)
		}
		if res, err := c.Probe(ctx, ProbeRequest{URL: base + "/where", Method: http.MethodPost}); err != nil || !res.OK() || res.Body != "posted" {
			t.Errorf("POST probe: %+v, %v", res, err)
		}
	})

	t.Run("failing status", func(t *testing.T) {
		res, err := c.Probe(ctx, ProbeRequest{URL: base + "/fail"})
		if err != nil {
			t.Fatal(err)
		}
		if res.OK() || res.Status != http.StatusServiceUnavailable || res.Error != "" || !strings.Contains(res.Body, "member s1 is unhealthy") {
			t.Fatalf("probe of a 503: %+v", res)
		}
		// Redirects are not followed: the 302 is the answer.
		if res, err := c.Probe(ctx, ProbeRequest{URL: base + "/moved"}); err != nil || res.OK() || res.Status != http.StatusFound {
			t.Errorf("probe of a redirect: %+v, %v", res, err)
		}
	})

	t.Run("body truncated", func(t *testing.T) {
		res, err := c.Probe(ctx, ProbeRequest{URL: base + "/big"})
		if err != nil || !res.OK() || len(res.Body) != MaxProbeBody {
			t.Fatalf("probe of a %d-byte body: %d bytes kept, %+v, %v", 3*MaxProbeBody, len(res.Body), res.Error, err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		res, err := c.Probe(ctx, ProbeRequest{URL: refusedURL})
		if err != nil {
			t.Fatal(err)
		}
		if res.OK() || res.Status != 0 || !strings.Contains(res.Error, "connection refused") {
			t.Fatalf("probe of a closed port: %+v", res)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		res, err := c.Probe(ctx, ProbeRequest{URL: "http://" + deadIP + ":7070/check", Timeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if res.OK() || res.Status != 0 || res.Error == "" || res.Seconds < 0.25 || res.Seconds > 3 {
			t.Fatalf("probe of an address nobody has, 300ms timeout: %+v", res)
		}
		t.Logf("unreachable: %.3fs: %s", res.Seconds, res.Error)
	})

	t.Run("refused requests", func(t *testing.T) {
		for _, u := range []string{"", "ftp://" + nodeIP + "/x", nodeIP + ":7070/check", "/check", "http:///check", "http://[::1"} {
			_, err := c.Probe(ctx, ProbeRequest{URL: u})
			wantStatus(t, err, http.StatusBadRequest)
			if !strings.Contains(err.Error(), "http://") {
				t.Errorf("url %q: error %q does not say what a good URL is", u, err)
			}
		}
		_, err := c.Probe(ctx, ProbeRequest{URL: base + "/where", Method: "get me"})
		wantStatus(t, err, http.StatusBadRequest)
		_, err = c.Probe(ctx, ProbeRequest{URL: base + "/where", Timeout: -time.Second})
		wantStatus(t, err, http.StatusBadRequest)
	})
}

// listenIn opens a TCP listener on ip, on a free port, inside the named namespace; the
// socket stays there whichever thread later uses it.
func listenIn(t *testing.T, netnsName, ip string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := nsrun.DoNamed(netnsName, func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(ip, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestProbeRequestJSON: the timeout travels as a duration string, nanoseconds are read
// too, unknown fields are refused; defaults and the cap.
func TestProbeRequestJSON(t *testing.T) {
	b, err := json.Marshal(ProbeRequest{URL: "http://a/check", Timeout: 2 * time.Second})
	if err != nil || string(b) != `{"url":"http://a/check","timeout":"2s"}` {
		t.Fatalf("marshal: %s, %v", b, err)
	}
	for in, want := range map[string]ProbeRequest{
		`{"url":"http://a/check","timeout":"2s"}`:                       {URL: "http://a/check", Timeout: 2 * time.Second},
		`{"url":"http://a/check","method":"HEAD","timeout":1500000000}`: {URL: "http://a/check", Method: "HEAD", Timeout: 1500 * time.Millisecond},
		`{"url":"http://a/check"}`:                                      {URL: "http://a/check"},
	} {
		var got ProbeRequest
		if err := json.Unmarshal([]byte(in), &got); err != nil || got != want {
			t.Errorf("unmarshal %s: %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{`{"url":"http://a","timeout":"2 s"}`, `{"url":"http://a","timeout":true}`, `{"url":"http://a","tmeout":"2s"}`} {
		var got ProbeRequest
		if err := json.Unmarshal([]byte(in), &got); err == nil {
			t.Errorf("unmarshal %s: no error", in)
		}
	}
	var res ProbeResult
	if err := json.Unmarshal([]byte(`{"url":"u","status":204,"body":"","seconds":0.01}`), &res); err != nil || !res.OK() {
		t.Errorf("a 204 is OK: %+v, %v", res, err)
	}

	p, err := ProbeRequest{URL: "https://a:1/x"}.normalize()
	if err != nil || p.Method != http.MethodGet || p.Timeout != DefaultProbeTimeout {
		t.Errorf("defaults: %+v, %v", p, err)
	}
	if p, err = (ProbeRequest{URL: "http://a/", Timeout: time.Hour}).normalize(); err != nil || p.Timeout != MaxProbeTimeout {
		t.Errorf("cap: %+v, %v", p, err)
	}
}

// TestProbeBadBody: a malformed body is a 400 too, through the raw API.
func TestProbeBadBody(t *testing.T) {
	a := startTestAgent(t, nil)
	for _, body := range []string{``, `{"url":"http://a/","bogus":1}`, `{"url":"http://a/","timeout":"soon"}`} {
		resp := rawPost(t, a, "/probe", body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST /probe %s: %d, want 400", body, resp.StatusCode)
		}
	}
	// A well-formed probe of a port nobody listens on, on this host's loopback: 200
	// with the failure in the result.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String() + "/"
	ln.Close()
	res, err := a.Probe(ctxT(t), ProbeRequest{URL: u, Timeout: time.Second})
	if err != nil || res.OK() || res.Status != 0 || res.Error == "" {
		t.Errorf("probe of a closed port: %+v, %v", res, err)
	}
}
