// Package probe holds dt's sample probes: small HTTP services that answer "does the
// system work right now?" with a status code. A scenario step names a probe URL; dt calls
// it after the step through a node's agent, so from inside the emulated network, and
// records the status and body as an event (a non-2xx answer is a failed probe).
//
// EtcdCheck is the example: copy this file to write your own probe. A probe should do a
// real client operation end to end (here: a write, then a linearizable read of it),
// bound itself with a short timeout, answer 200 only when everything checked out, and
// put what it measured and what went wrong in a small JSON body.
//
// `dt probe etcd --listen ADDR --endpoints URL,URL` serves EtcdCheck.
package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EnvEndpoints names the environment variable that holds the system's client endpoints,
// comma-separated, for the processes a scenario starts: `dt probe etcd` reads it when
// --endpoints is not given.
const EnvEndpoints = "DT_ENDPOINTS"

// DefaultTimeout bounds one check, write and read together, when the request has no
// ?timeout=. MaxTimeout is the most a request may ask for.
const (
	DefaultTimeout = 2 * time.Second
	MaxTimeout     = 30 * time.Second
)

// EtcdResult is the JSON body of GET /check: 200 when OK, 503 otherwise.
type EtcdResult struct {
	OK       bool    `json:"ok"`
	Key      string  `json:"key,omitempty"`
	Revision int64   `json:"revision,omitempty"`  // the cluster revision the write created
	MemberID string  `json:"member_id,omitempty"` // the member that answered the write, in hex as etcdctl prints it
	RaftTerm uint64  `json:"raft_term,omitempty"` // its raft term then
	WriteMs  float64 `json:"write_ms"`
	ReadMs   float64 `json:"read_ms"`
	Error    string  `json:"error,omitempty"`
}

// EtcdCheck returns a handler serving GET /check against the etcd cluster at endpoints
// (client URLs such as http://10.0.1.1:2379). Each check writes a key of its own,
// dt-probe/<start>-<n>, then reads it back with a linearizable Get (one that goes
// through the leader's quorum, so a minority partition or a lost leader fails it) and
// checks it reads the value written. ?timeout=500ms overrides DefaultTimeout.
//
// Copy this to write your own probe: keep the shape (a fresh client per check, one
// deadline for the whole check, 200 or 503 with a JSON body) and change the operations.
//
//	curl -s http://127.0.0.1:7070/check
//	{"ok":true,"key":"dt-probe/1764556800000000000-1","revision":42,"member_id":"8e9e05c52164694d","raft_term":2,"write_ms":1.9,"read_ms":0.8}
func EtcdCheck(endpoints []string) http.Handler {
	c := &etcdCheck{endpoints: endpoints, prefix: "dt-probe/" + strconv.FormatInt(time.Now().UnixNano(), 10) + "-"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /check", c.serve)
	return mux
}

type etcdCheck struct {
	endpoints []string
	prefix    string       // unique to this handler: keys of two probe processes never collide
	n         atomic.Int64 // checks so far: the rest of the key
}

func (c *etcdCheck) serve(w http.ResponseWriter, r *http.Request) {
	timeout := DefaultTimeout
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > MaxTimeout {
			reply(w, http.StatusBadRequest, EtcdResult{Error: fmt.Sprintf("timeout %q: want a duration in (0, %v], such as 500ms", v, MaxTimeout)})
			return
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res := c.check(ctx, timeout)
	code := http.StatusOK
	if !res.OK {
		code = http.StatusServiceUnavailable
	}
	reply(w, code, res)
}

// check is the probe proper: everything it does is bounded by ctx.
func (c *etcdCheck) check(ctx context.Context, timeout time.Duration) EtcdResult {
	res := EtcdResult{Key: c.prefix + strconv.FormatInt(c.n.Add(1), 10)}
	// A fresh client per check: nothing from an earlier one (a connection in backoff, a
	// member it had given up on) colours this answer. Dialing does not block; the
	// operations wait for a connection until ctx ends.
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.endpoints,
		DialTimeout: timeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		res.Error = "client: " + err.Error()
		return res
	}
	defer cli.Close()

	value := time.Now().UTC().Format(time.RFC3339Nano)
	start := time.Now()
	put, err := cli.Put(ctx, res.Key, value)
	res.WriteMs = ms(time.Since(start))
	if err != nil {
		res.Error = "write: " + c.explain(ctx, err, timeout)
		return res
	}
	res.Revision = put.Header.Revision
	res.MemberID = strconv.FormatUint(put.Header.MemberId, 16)
	res.RaftTerm = put.Header.RaftTerm

	start = time.Now()
	get, err := cli.Get(ctx, res.Key) // linearizable: clientv3's default
	res.ReadMs = ms(time.Since(start))
	switch {
	case err != nil:
		res.Error = "read: " + c.explain(ctx, err, timeout)
	case len(get.Kvs) != 1:
		res.Error = fmt.Sprintf("read: %s not found after it was written at revision %d", res.Key, res.Revision)
	case string(get.Kvs[0].Value) != value:
		res.Error = fmt.Sprintf("read: %s = %q, want %q (written at revision %d)", res.Key, get.Kvs[0].Value, value, res.Revision)
	default:
		res.OK = true
	}
	return res
}

// explain adds the timeout and the endpoints to an error that is only the deadline:
// clientv3 waits for a connection until then, so a dead or unreachable member shows up
// as "context deadline exceeded" and nothing more.
func (c *etcdCheck) explain(ctx context.Context, err error, timeout time.Duration) string {
	if ctx.Err() == nil {
		return err.Error()
	}
	return fmt.Sprintf("%v (no answer within %v from %s)", err, timeout, strings.Join(c.endpoints, ","))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func reply(w http.ResponseWriter, code int, res EtcdResult) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(res)
}
