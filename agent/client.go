package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/workloads"
)

// Client talks to one agent over its unix socket. It is safe for concurrent use. Every
// call is bounded by its context only: workload streams last as long as the run.
type Client struct {
	socket string
	hc     *http.Client
}

// Dial returns a client for the agent serving on socketPath. It does not connect until
// the first call.
func Dial(socketPath string) *Client {
	var d net.Dialer
	return &Client{
		socket: socketPath,
		hc: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", socketPath)
			},
			DisableCompression:  true,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     30 * time.Second,
		}},
	}
}

// Socket is the path of the agent's socket.
func (c *Client) Socket() string { return c.socket }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// send issues a request and returns the response if its status is below 400; otherwise
// it returns an *APIError. The URL host is a placeholder: the transport always dials
// the socket.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, in any) (*http.Response, error) {
	u := url.URL{Scheme: "http", Host: "agent", Path: path, RawQuery: query.Encode()}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("agent %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("agent %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %s %s: %w", c.socket, method, path, err)
	}
	if resp.StatusCode < 400 {
		return resp, nil
	}
	defer resp.Body.Close()
	apiErr := &APIError{Method: method, Path: path, StatusCode: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	var eb errorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
		apiErr.Message = eb.Error
	} else {
		apiErr.Message = string(bytes.TrimSpace(b))
	}
	return nil, apiErr
}

// call issues a request and decodes the JSON answer into out (if not nil).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	resp, err := c.send(ctx, method, path, query, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	} else {
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	if err != nil {
		return fmt.Errorf("agent %s: %s %s: read answer: %w", c.socket, method, path, err)
	}
	return nil
}

func procPath(name string, action string) string {
	p := "/procs/" + url.PathEscape(name)
	if action != "" {
		p += "/" + action
	}
	return p
}

func graceQuery(grace time.Duration) url.Values {
	if grace <= 0 {
		return nil
	}
	return url.Values{"grace": {grace.String()}}
}

// Health asks the agent who and where it is; it answers as soon as it serves.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.call(ctx, http.MethodGet, "/health", nil, nil, &h)
	return h, err
}

// absPath makes a relative path absolute from the caller's working directory, which the
// agent (started by Launch) shares; the agent itself accepts absolute paths only.
func absPath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// Start starts a process. Starting a name whose process has ended starts it anew and
// counts as a restart; a name still alive is an ErrConflict. Relative Log and Dir are
// taken from the caller's working directory.
func (c *Client) Start(ctx context.Context, spec ProcSpec) (ProcStatus, error) {
	spec.Log, spec.Dir = absPath(spec.Log), absPath(spec.Dir)
	var st ProcStatus
	err := c.call(ctx, http.MethodPost, "/procs", nil, spec, &st)
	return st, err
}

// Stop sends SIGTERM to the process group, then SIGKILL once grace has passed (grace
// <= 0: DefaultGrace), and returns the final status. Equivalent to: kill -TERM -PGID;
// sleep GRACE; kill -KILL -PGID.
func (c *Client) Stop(ctx context.Context, name string, grace time.Duration) (ProcStatus, error) {
	var st ProcStatus
	err := c.call(ctx, http.MethodPost, procPath(name, "stop"), graceQuery(grace), nil, &st)
	return st, err
}

// Kill sends SIGKILL to the process group and returns the final status. Equivalent to:
// kill -KILL -PGID.
func (c *Client) Kill(ctx context.Context, name string) (ProcStatus, error) {
	var st ProcStatus
	err := c.call(ctx, http.MethodPost, procPath(name, "kill"), nil, nil, &st)
	return st, err
}

// Pause freezes the process group and returns once its leader is stopped (state T).
// Equivalent to: kill -STOP -PGID.
func (c *Client) Pause(ctx context.Context, name string) (ProcStatus, error) {
	var st ProcStatus
	err := c.call(ctx, http.MethodPost, procPath(name, "pause"), nil, nil, &st)
	return st, err
}

// Continue resumes a paused process group. Equivalent to: kill -CONT -PGID.
func (c *Client) Continue(ctx context.Context, name string) (ProcStatus, error) {
	var st ProcStatus
	err := c.call(ctx, http.MethodPost, procPath(name, "continue"), nil, nil, &st)
	return st, err
}

// Restart starts the process's last spec again; if it is still alive it is stopped
// first, with grace as in Stop.
func (c *Client) Restart(ctx context.Context, name string, grace time.Duration) (ProcStatus, error) {
	var st ProcStatus
	err := c.call(ctx, http.MethodPost, procPath(name, "restart"), graceQuery(grace), nil, &st)
	return st, err
}

// Status returns one process's status.
func (c *Client) Status(ctx context.Context, name string) (ProcStatus, error) {
	var st ProcStatus
	err := c.call(ctx, http.MethodGet, procPath(name, ""), nil, nil, &st)
	return st, err
}

// List returns every process the agent has started, sorted by name.
func (c *Client) List(ctx context.Context) ([]ProcStatus, error) {
	var sts []ProcStatus
	err := c.call(ctx, http.MethodGet, "/procs", nil, nil, &sts)
	return sts, err
}

// BackupDir copies the tree at src to dst (which must not exist yet); both must lie
// inside the agent's run directory. Equivalent to: cp -a SRC DST.
func (c *Client) BackupDir(ctx context.Context, src, dst string) error {
	return c.call(ctx, http.MethodPost, "/dirs/backup", nil, BackupRequest{Src: absPath(src), Dst: absPath(dst)}, nil)
}

// CleanDir removes the tree at path, which must lie inside the agent's run directory. A
// path that does not exist is not an error. Equivalent to: rm -rf PATH.
func (c *Client) CleanDir(ctx context.Context, path string) error {
	return c.call(ctx, http.MethodPost, "/dirs/clean", nil, CleanRequest{Path: absPath(path)}, nil)
}

// SystemStatus reads a member's own view through endpoint, from inside the agent's
// namespace. A member that does not answer is an *APIError with status 502.
func (c *Client) SystemStatus(ctx context.Context, system, endpoint string) (systems.MemberStatus, error) {
	var st systems.MemberStatus
	err := c.call(ctx, http.MethodGet, "/system/status", url.Values{"system": {system}, "endpoint": {endpoint}}, nil, &st)
	return st, err
}

// RunWorkload runs a workload client in the agent and calls onOp for every operation
// record as it arrives, in the order the agent wrote them. It returns when the workload
// ends (nil, or the run's error), when onOp returns an error (which it returns), or when
// ctx is cancelled, which also stops the client in the agent.
func (c *Client) RunWorkload(ctx context.Context, spec workloads.Spec, onOp func(records.Op) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := c.send(ctx, http.MethodPost, "/workload", nil, spec)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	dec.DisallowUnknownFields()
	for {
		var op records.Op
		err := dec.Decode(&op)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("workload %s: %w", spec.Client, ctx.Err())
			}
			return fmt.Errorf("workload %s: read op stream from %s: %w", spec.Client, c.socket, err)
		}
		if err := onOp(op); err != nil {
			return fmt.Errorf("workload %s: %w", spec.Client, err)
		}
	}
	// Trailers are only there once the body has been read to its end.
	switch resp.Trailer.Get(trailerStatus) {
	case "ok":
		return nil
	case "error":
		return fmt.Errorf("workload %s: %s", spec.Client, resp.Trailer.Get(trailerError))
	}
	if ctx.Err() != nil {
		return fmt.Errorf("workload %s: %w", spec.Client, ctx.Err())
	}
	return fmt.Errorf("workload %s: stream from %s ended without a final status (agent gone?)", spec.Client, c.socket)
}

// Shutdown asks the agent to kill its processes, remove its socket and exit. It returns
// once the agent has accepted; use Agent.Close to also wait for the process.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/shutdown", nil, nil, nil)
}

// StopWorkload ends client's running workload gracefully: no new operations, those in
// flight are still recorded, and RunWorkload then returns nil.
func (c *Client) StopWorkload(ctx context.Context, client string) error {
	return c.call(ctx, http.MethodPost, "/workload/stop", url.Values{"client": {client}}, nil, nil)
}

// Probe has the agent make one HTTP request from inside its namespace, where the
// emulated network's addresses are, and returns what it got. A probe that failed (no
// answer, a non-2xx status) is a result, not an error: see ProbeResult.OK. The error is
// for a request the agent refused (an *APIError, ErrBadRequest for a URL that is not
// http:// or https://) or could not be asked. ctx must outlast req.Timeout
// (DefaultProbeTimeout when zero).
func (c *Client) Probe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	var res ProbeResult
	err := c.call(ctx, http.MethodPost, "/probe", nil, req, &res)
	return res, err
}
