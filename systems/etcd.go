package systems

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/dtlab/dt/workloads"
)

// etcd defaults.
const (
	// EtcdBin is the Debian etcd-server binary (3.4.23 on bookworm).
	EtcdBin = "/usr/bin/etcd"
	// EtcdClientPort and EtcdPeerPort are the same on every member: each member has its own
	// address (its own namespace, or its own loopback address with Cluster.SharedNetns).
	EtcdClientPort = 2379
	EtcdPeerPort   = 2380
	// DefaultFailureTimeout is reckon's --failure-timeout: election 1 s, heartbeat 100 ms.
	DefaultFailureTimeout = 1.0
	// DefaultToken is the --initial-cluster-token when Cluster.Token is empty.
	DefaultToken = "dt"
)

// etcd runs etcd members and talks to them with the official v3 client. preVote forces
// --pre-vote=true whatever Cluster.PreVote says (the "etcd-pre-vote" system).
type etcd struct {
	name    string
	preVote bool
}

// newEtcd returns an etcd System registered as name; preVote forces Raft pre-vote on.
// The built-in "etcd" and "etcd-pre-vote" are already registered.
func newEtcd(name string, preVote bool) System { return &etcd{name: name, preVote: preVote} }

func (e *etcd) Name() string { return e.name }

func clientURL(ip string) string {
	return "http://" + net.JoinHostPort(ip, strconv.Itoa(EtcdClientPort))
}
func peerURL(ip string) string { return "http://" + net.JoinHostPort(ip, strconv.Itoa(EtcdPeerPort)) }

// MemberCommand starts member i with data in RUN/data/NAME and its log in
// RUN/logs/NAME.log (zap JSON lines on stderr; the first "starting an etcd server" line
// records the effective configuration, "pre-vote" included). Every flag is written as
// --flag=value: Go's flag package reads "--pre-vote false" as --pre-vote=true followed by
// a stray argument. etcd also reads ETCD_* environment variables and refuses to start
// when one shadows a flag given here, so the agent should not pass any.
//
// Equivalent to:
//
//	etcd --name=s1 --data-dir=RUN/data/s1 --listen-peer-urls=http://IP:2380 \
//	  --initial-advertise-peer-urls=http://IP:2380 \
//	  --listen-client-urls=http://IP:2379,http://127.0.0.1:2379 --advertise-client-urls=http://IP:2379 \
//	  --initial-cluster=s1=http://IP1:2380,... --initial-cluster-token=TOKEN --initial-cluster-state=new \
//	  --election-timeout=1000 --heartbeat-interval=100 --pre-vote=false --logger=zap --log-outputs=stderr
//
// The same flags for 3.4, 3.5, 3.6 and 3.7: none of them is one that 3.6 removed
// (--enable-v2, --experimental-*...), checked in 3.6.16's embed/config.go.
func (e *etcd) MemberCommand(c Cluster, i int, rejoin bool) Command {
	m := c.Members[i]
	t := c.FailureTimeout
	if t <= 0 {
		t = DefaultFailureTimeout
	}
	bin := c.Bin
	if bin == "" {
		bin = EtcdBin
	}
	token := c.Token
	if token == "" {
		token = DefaultToken
	}
	state := "new"
	if rejoin {
		state = "existing"
	}
	peers := make([]string, len(c.Members))
	for j, p := range c.Members {
		peers[j] = p.Name + "=" + peerURL(p.IP)
	}
	listenClient := clientURL(m.IP)
	if !c.SharedNetns {
		// How the member's own agent reads its status even when the emulated network is cut.
		listenClient += "," + clientURL("127.0.0.1")
	}
	ms := func(v float64) string { return strconv.Itoa(max(1, int(math.Round(v)))) }
	dataDir := filepath.Join(c.RunDir, "data", m.Name)
	cmd := Command{
		Argv: []string{
			bin,
			"--name=" + m.Name,
			"--data-dir=" + dataDir,
			"--listen-peer-urls=" + peerURL(m.IP),
			"--initial-advertise-peer-urls=" + peerURL(m.IP),
			"--listen-client-urls=" + listenClient,
			"--advertise-client-urls=" + clientURL(m.IP),
			"--initial-cluster=" + strings.Join(peers, ","),
			"--initial-cluster-token=" + token,
			"--initial-cluster-state=" + state,
			"--election-timeout=" + ms(1000*t),
			"--heartbeat-interval=" + ms(100*t),
			// etcd 3.4 defaults to false, 3.5+ to true: always say which.
			"--pre-vote=" + strconv.FormatBool(e.preVote || c.PreVote),
			"--logger=zap",
			"--log-outputs=stderr",
		},
		Dir:     c.RunDir,
		DataDir: dataDir,
		Log:     filepath.Join(c.RunDir, "logs", m.Name+".log"),
	}
	if c.SnapshotCount > 0 {
		cmd.Argv = append(cmd.Argv, "--snapshot-count="+strconv.Itoa(c.SnapshotCount))
	}
	return cmd
}

// CatchUpEntries is etcd's SnapshotCatchUpEntries (3.4 and 3.5): the entries a member
// keeps after a snapshot so that a slow follower can catch up without one.
func (e etcd) CatchUpEntries() uint64 { return 5000 }

// SnapshotIndex reads the index of the newest snapshot in a member's data dir: etcd
// names them member/snap/<term>-<index>.snap in hex. 0 when there is none yet.
func (e etcd) SnapshotIndex(dataDir string) (uint64, error) {
	entries, err := os.ReadDir(filepath.Join(dataDir, "member", "snap"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var newest uint64
	for _, en := range entries {
		var term, index uint64
		if _, err := fmt.Sscanf(en.Name(), "%016x-%016x.snap", &term, &index); err == nil && strings.HasSuffix(en.Name(), ".snap") {
			newest = max(newest, index)
		}
	}
	return newest, nil
}

// ClientEndpoints returns http://IP:2379 for every member.
func (e *etcd) ClientEndpoints(c Cluster) []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = clientURL(m.IP)
	}
	return eps
}

// LocalEndpoint is http://127.0.0.1:2379, or the member's IP URL with SharedNetns.
func (e *etcd) LocalEndpoint(c Cluster, i int) string {
	if c.SharedNetns {
		return clientURL(c.Members[i].IP)
	}
	return clientURL("127.0.0.1")
}

// ClientEnv sets etcdctl to the v3 API and to every member's client URL.
func (e *etcd) ClientEnv(c Cluster) []string {
	return []string{
		"ETCDCTL_API=3",
		"ETCDCTL_ENDPOINTS=" + strings.Join(e.ClientEndpoints(c), ","),
	}
}

// reconnect bounds gRPC's reconnection backoff (default: up to 120 s) so that a member
// that comes back is used again within about a second; otherwise the client's backoff,
// not the system, would decide how long recovery appears to take.
var reconnect = grpc.WithConnectParams(grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: time.Second,
})

// NewKV builds one clientv3.Client per endpoint and sends each operation to the next
// endpoint in turn, so that the record can say where every operation went (a single
// multi-endpoint client balances internally and does not tell). Reads are linearizable
// unless SetReadConsistency says serializable; CompareAndSet is a Txn.
//
// Each operation is bounded by opTimeout (and by its context). What clientv3 itself
// still does, and we keep because real etcd clients do it: calls wait for the
// connection to be ready instead of failing fast (WaitForReady), so an operation sent
// to a dead member times out rather than failing at once; Get is retried against the
// same endpoint on codes.Unavailable every ~25 ms until the timeout; Put is retried only
// when it provably never left the client (no connection available). Dialing does not
// block, so NewKV succeeds while members are down. Endpoint auto-sync stays off: each
// client talks to its one endpoint only.
func (e *etcd) NewKV(endpoints []string, opTimeout time.Duration) (workloads.KV, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("etcd client: no endpoints")
	}
	kv := &etcdKV{balancer: newBalancer(len(endpoints), true), endpoints: endpoints, timeout: opTimeout}
	for _, ep := range endpoints {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: []string{ep},
			// The dial itself does not block; this bounds only New's auth round trip.
			DialTimeout: 2 * time.Second,
			Logger:      zap.NewNop(),
			DialOptions: []grpc.DialOption{reconnect},
		})
		if err != nil {
			kv.Close()
			return nil, fmt.Errorf("etcd client for %s: %w", ep, err)
		}
		kv.clients = append(kv.clients, cli)
	}
	return kv, nil
}

// etcdKV implements workloads.TargetedKV, CASKV and ReadConsistencyKV: round robin over
// the endpoints with a circuit breaker per endpoint (balancer).
type etcdKV struct {
	*balancer
	endpoints []string
	clients   []*clientv3.Client
	timeout   time.Duration
	// serializable makes Get read the member's own state (clientv3.WithSerializable)
	// instead of a quorum read.
	serializable atomic.Bool
}

// ClientFeatures: the etcd client compare-and-sets (a Txn) and reads linearizably or
// serializably.
func (e *etcd) ClientFeatures() workloads.Features {
	return workloads.Features{CAS: true, ReadConsistencies: etcdReadConsistencies}
}

var etcdReadConsistencies = []string{workloads.ReadLinearizable, workloads.ReadSerializable}

// ReadConsistencies lists what SetReadConsistency accepts.
func (k *etcdKV) ReadConsistencies() []string { return etcdReadConsistencies }

// SetReadConsistency makes later reads linearizable (a quorum read through the leader,
// etcd's default) or serializable (served by the member the read goes to from its own
// state: a member cut off from the leader answers with what it had).
func (k *etcdKV) SetReadConsistency(level string) error {
	switch level {
	case workloads.ReadLinearizable, "":
		k.serializable.Store(false)
	case workloads.ReadSerializable:
		k.serializable.Store(true)
	default:
		return fmt.Errorf("etcd client: read consistency %q: valid: %s", level, strings.Join(etcdReadConsistencies, ", "))
	}
	return nil
}

func (k *etcdKV) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if k.timeout > 0 {
		return context.WithTimeout(ctx, k.timeout)
	}
	return ctx, func() {}
}

func (k *etcdKV) PutTarget(ctx context.Context, key, value string) (string, error) {
	i := k.pick()
	ctx, cancel := k.opContext(ctx)
	defer cancel()
	if _, err := k.clients[i].Put(ctx, key, value); err != nil {
		k.failed(i)
		return k.endpoints[i], fmt.Errorf("etcd put: %w", err)
	}
	k.succeeded(i)
	return k.endpoints[i], nil
}

func (k *etcdKV) GetTarget(ctx context.Context, key string) (string, bool, string, error) {
	i := k.pick()
	ctx, cancel := k.opContext(ctx)
	defer cancel()
	var opts []clientv3.OpOption
	if k.serializable.Load() {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := k.clients[i].Get(ctx, key, opts...)
	if err != nil {
		k.failed(i)
		return "", false, k.endpoints[i], fmt.Errorf("etcd get: %w", err)
	}
	k.succeeded(i)
	if len(resp.Kvs) == 0 {
		return "", false, k.endpoints[i], nil
	}
	return string(resp.Kvs[0].Value), true, k.endpoints[i], nil
}

// CompareAndSet is one Txn: if the key holds old (old "" : the key does not exist, its
// create revision is 0) put new, else read the key, so a failed compare reports the
// value it found in the same atomic step.
//
// Equivalent to: etcdctl txn <<< $'value("KEY") = "OLD"\n\nput KEY NEW\n\nget KEY\n'
func (k *etcdKV) CompareAndSet(ctx context.Context, key, old, new string) (workloads.CASResult, error) {
	i := k.pick()
	res := workloads.CASResult{Target: k.endpoints[i]}
	ctx, cancel := k.opContext(ctx)
	defer cancel()
	cmp := clientv3.Compare(clientv3.Value(key), "=", old)
	if old == "" {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	resp, err := k.clients[i].Txn(ctx).If(cmp).Then(clientv3.OpPut(key, new)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		k.failed(i)
		return res, fmt.Errorf("etcd txn: %w", err)
	}
	k.succeeded(i)
	if resp.Succeeded {
		res.Swapped = true
		return res, nil
	}
	res.Known = true
	if len(resp.Responses) == 1 {
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			res.Current = string(r.Kvs[0].Value)
		}
	}
	return res, nil
}

func (k *etcdKV) Put(ctx context.Context, key, value string) error {
	_, err := k.PutTarget(ctx, key, value)
	return err
}

func (k *etcdKV) Get(ctx context.Context, key string) (string, bool, error) {
	v, ok, _, err := k.GetTarget(ctx, key)
	return v, ok, err
}

// Target is the endpoint picked by the most recent operation.
func (k *etcdKV) Target() string { return k.endpoints[k.lastPicked()] }

func (k *etcdKV) Close() error {
	var errs []error
	for _, c := range k.clients {
		if err := c.Close(); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// statusTimeout bounds one Status call, whatever the caller's context allows: a member
// that is paused or cut off must not hold up a poller that runs every ~100 ms.
const statusTimeout = 300 * time.Millisecond

// statusHTTP keeps connections to each member's client URL alive between polls.
var statusHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}}

// CloseStatusConns closes the idle connections kept by Status (the next Status reopens
// them) and forgets what Status remembers of members.
func CloseStatusConns() {
	statusHTTP.CloseIdleConnections()
	zkForget()
}

// Status asks the member at endpoint for its own raft view: member id, leader id (hex, as
// etcdctl prints them), raft term, commit index and role. It is healthy when
// it answers within 300 ms and knows a leader. A member that cannot be reached yields an
// error, and a MemberStatus carrying it.
func (e *etcd) Status(ctx context.Context, endpoint string) (MemberStatus, error) {
	// The maintenance Status RPC reports the term of the last *applied* entry (etcd 3.4
	// sets it while applying), so a follower cut off from the leader, campaigning at ever
	// higher terms, still shows the old term there. The raft node's own status, published
	// as the expvar "raft.status", has the real term, leader and role.
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(endpoint, "/")+"/debug/vars", nil)
	if err != nil {
		return MemberStatus{Error: err.Error()}, err
	}
	resp, err := statusHTTP.Do(req)
	if err != nil {
		err = fmt.Errorf("etcd status %s: %w", endpoint, err)
		return MemberStatus{Error: err.Error()}, err
	}
	defer resp.Body.Close()
	var vars struct {
		Raft *struct {
			ID        string `json:"id"`
			Term      uint64 `json:"term"`
			Lead      string `json:"lead"`
			Applied   uint64 `json:"applied"`
			Commit    uint64 `json:"commit"`
			RaftState string `json:"raftState"`
		} `json:"raft.status"`
	}
	if resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("etcd status %s: HTTP %s", endpoint, resp.Status)
		return MemberStatus{Error: err.Error()}, err
	}
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil || vars.Raft == nil {
		err = fmt.Errorf("etcd status %s: no raft.status in /debug/vars: %v", endpoint, err)
		return MemberStatus{Error: err.Error()}, err
	}
	r := vars.Raft
	st := MemberStatus{ID: r.ID, Term: r.Term, Index: r.Commit,
		Role: strings.ToLower(strings.TrimPrefix(r.RaftState, "State"))}
	if r.Lead != "" && r.Lead != "0" {
		st.LeaderID = r.Lead
		st.Healthy = true
	}
	return st, nil
}

// Options are etcd's --system-opt keys.
func (e *etcd) Options() []Option {
	return []Option{
		{Key: "version", Help: "an etcd release to build from the Go module proxy and run, 3.5.0 or newer (3.6.16); default: Debian's " + EtcdBin},
		{Key: "bin", Help: "the etcd binary to run (as --system-bin); default " + EtcdBin},
		{Key: "pre-vote", Help: "true or false: raft pre-vote (as --pre-vote)"},
	}
}

// SetOptions applies version, bin and pre-vote to c; version and a binary (bin or
// --system-bin) exclude each other.
func (e *etcd) SetOptions(c *Cluster, opts map[string]string) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		v := opts[k]
		switch k {
		case "version":
			r, err := ParseEtcdRelease(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("--system-opt version: %w", err))
				continue
			}
			c.Version = r.String()
		case "bin":
			if v == "" {
				errs = append(errs, errors.New("--system-opt bin: empty path"))
				continue
			}
			c.Bin = v
		case "pre-vote":
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("--system-opt pre-vote=%s: want true or false", v))
				continue
			}
			c.PreVote = b
		default:
			errs = append(errs, UnknownOption(e, k))
		}
	}
	if c.Version != "" && c.Bin != "" {
		errs = append(errs, fmt.Errorf("--system-opt version=%s and the binary %s (bin or --system-bin) both say what runs: give one", c.Version, c.Bin))
	}
	return errors.Join(errs...)
}

// Prepare builds c.Version, when set, from the Go module proxy (once: it is cached,
// see EtcdBinary) and sets c.Bin to it.
func (e *etcd) Prepare(ctx context.Context, c *Cluster, progress io.Writer) error {
	if c.Version == "" {
		return nil
	}
	r, err := ParseEtcdRelease(c.Version)
	if err != nil {
		return err
	}
	bin, err := EtcdBinary(ctx, r, progress)
	if err != nil {
		return err
	}
	c.Bin = bin
	return nil
}

// Check reports a missing etcd binary with the package that provides it. A Version to
// build needs Go instead.
func (e *etcd) Check(c Cluster) error {
	if c.Version != "" && c.Bin == "" {
		if _, err := exec.LookPath("go"); err != nil {
			if _, serr := os.Stat("/usr/local/go/bin/go"); serr != nil {
				return fmt.Errorf("etcd %s is built from the Go module proxy, which needs Go (no go on PATH, no /usr/local/go/bin/go): %w", c.Version, err)
			}
		}
		return nil
	}
	bin := c.Bin
	if bin == "" {
		bin = EtcdBin
	}
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("etcd binary %s not found (apt-get install etcd-server, --system-bin PATH, or --system-opt version=3.6.16 to build one): %w", bin, err)
	}
	return nil
}

// Version is the first line of `etcd --version` ("etcd Version: 3.4.23").
func (e *etcd) Version(bin string) string {
	if bin == "" {
		bin = EtcdBin
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// CLI is etcdctl, which finds the cluster in ETCDCTL_ENDPOINTS (ClientEnv).
func (e *etcd) CLI(Cluster) CLI {
	return CLI{Name: "etcdctl", Argv: []string{"etcdctl"},
		Summary:  "etcdctl in a client node's namespace, ETCDCTL_ENDPOINTS set to the cluster",
		Complete: []string{"get", "put", "del", "member", "endpoint", "watch", "--write-out=table"}}
}

// Ports are the client and peer ports.
func (e *etcd) Ports() []int { return []int{EtcdClientPort, EtcdPeerPort} }
