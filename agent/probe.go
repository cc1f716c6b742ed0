package agent

// Probes: one HTTP request made by the agent, so from inside its node's namespace. The
// harness runs on the host, where the emulated network's addresses do not exist; a
// scenario step's probe (and anyone else who wants to ask a service inside the cluster
// something) goes through a node's agent.
//
// Route:
//
//	POST /probe  ProbeRequest -> ProbeResult
//
// The answer is 200 whenever the request was well formed: the probe's own failure (no
// answer, a 5xx) is in the result. 400 for a URL that is not absolute http:// or
// https://, an invalid method, a negative timeout, or unknown fields.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Probe timeouts: the default when the request names none, and the most it may name
// (longer ones are cut to it).
const (
	DefaultProbeTimeout = 5 * time.Second
	MaxProbeTimeout     = 60 * time.Second
)

// MaxProbeBody is how much of the probed answer's body a ProbeResult keeps.
const MaxProbeBody = 4 << 10

// ProbeRequest asks the agent to make one HTTP request from inside its namespace.
//
// In JSON the timeout is a Go duration string ("2s", "500ms"); a number is read as
// nanoseconds, as encoding/json writes a time.Duration:
//
//	{"url": "http://10.0.1.1:7070/check", "method": "GET", "timeout": "2s"}
type ProbeRequest struct {
	URL     string        // absolute http:// or https:// URL
	Method  string        // "" = GET
	Timeout time.Duration // the whole request, body included; 0 = DefaultProbeTimeout, at most MaxProbeTimeout
}

// probeRequestJSON is ProbeRequest on the wire.
type probeRequestJSON struct {
	URL     string          `json:"url"`
	Method  string          `json:"method,omitempty"`
	Timeout json.RawMessage `json:"timeout,omitempty"`
}

// MarshalJSON writes the timeout as a duration string.
func (p ProbeRequest) MarshalJSON() ([]byte, error) {
	w := probeRequestJSON{URL: p.URL, Method: p.Method}
	if p.Timeout != 0 {
		w.Timeout, _ = json.Marshal(p.Timeout.String())
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the timeout as a duration string or as nanoseconds, and refuses
// unknown fields.
func (p *ProbeRequest) UnmarshalJSON(b []byte) error {
	var w probeRequestJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return err
	}
	*p = ProbeRequest{URL: w.URL, Method: w.Method}
	if len(w.Timeout) == 0 || string(w.Timeout) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(w.Timeout, &s); err == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("timeout %q: want a duration such as 2s or 500ms", s)
		}
		p.Timeout = d
		return nil
	}
	var ns int64
	if err := json.Unmarshal(w.Timeout, &ns); err != nil {
		return fmt.Errorf("timeout %s: want a duration string such as \"2s\" or integer nanoseconds", w.Timeout)
	}
	p.Timeout = time.Duration(ns)
	return nil
}

// ProbeResult is what a probe got. Status is 0 when no answer came (Error says why);
// Body holds at most the first MaxProbeBody bytes of the answer (bytes that are not
// UTF-8 arrive as U+FFFD); Seconds runs from the start of the request to the end of
// reading the body.
type ProbeResult struct {
	URL     string  `json:"url"`
	Status  int     `json:"status"`
	Body    string  `json:"body"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
}

// OK reports whether the probe got a 2xx answer and no error.
func (r ProbeResult) OK() bool { return r.Error == "" && r.Status >= 200 && r.Status < 300 }

// normalize fills the defaults in and checks the request, with the message a 400 carries.
func (p ProbeRequest) normalize() (ProbeRequest, error) {
	const want = "want an absolute http:// or https:// URL, such as http://10.0.1.1:7070/check"
	u, err := url.Parse(p.URL)
	if err != nil {
		return p, fmt.Errorf("probe url %q: %v; %s", p.URL, errors.Unwrap(err), want)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return p, fmt.Errorf("probe url %q: %s", p.URL, want)
	}
	if p.Method == "" {
		p.Method = http.MethodGet
	}
	if strings.Trim(p.Method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "" {
		return p, fmt.Errorf("probe method %q: want an upper-case HTTP method such as GET or POST", p.Method)
	}
	switch {
	case p.Timeout < 0:
		return p, fmt.Errorf("probe timeout %v: must not be negative (0 = %v)", p.Timeout, DefaultProbeTimeout)
	case p.Timeout == 0:
		p.Timeout = DefaultProbeTimeout
	case p.Timeout > MaxProbeTimeout:
		p.Timeout = MaxProbeTimeout
	}
	return p, nil
}

// doProbe makes the request from the calling process's namespace: the agent's. Every
// probe has a connection of its own (no keep-alive, so an earlier probe's connection
// cannot make a cut path look open), ignores HTTP_PROXY and friends (the target is in
// the emulated network, not behind the host's proxy) and does not follow redirects (a
// 3xx is the answer, and not OK).
func doProbe(ctx context.Context, p ProbeRequest) (res ProbeResult) {
	res.URL = p.URL
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	start := time.Now()
	defer func() { res.Seconds = time.Since(start).Seconds() }()
	req, err := http.NewRequestWithContext(ctx, p.Method, p.URL, nil)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	req.Header.Set("User-Agent", "dt-probe")
	resp, err := hc.Do(req)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxProbeBody))
	res.Body = string(body)
	if err != nil && !errors.Is(err, io.EOF) {
		res.Error = "read body: " + err.Error()
	}
	return res
}

func (s *server) handleProbe(w http.ResponseWriter, r *http.Request) {
	var req ProbeRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	req, err := req.normalize()
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	res := doProbe(r.Context(), req)
	s.log.Debug("probe", "method", req.Method, "url", req.URL, "status", res.Status, "err", res.Error, "seconds", res.Seconds)
	writeJSON(w, http.StatusOK, res)
}
