package systems

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dtlab/dt/workloads"
)

// ZooKeeper defaults: Debian bookworm's zookeeper package (3.8.0) and its JRE.
const (
	// ZooKeeperJava is the JVM that runs each member (Cluster.Bin overrides it).
	ZooKeeperJava = "/usr/bin/java"
	// ZooKeeperJar is the server and client library; its manifest's Class-Path names
	// the jars it needs (netty, jetty, jackson...), all in /usr/share/java.
	ZooKeeperJar = "/usr/share/java/zookeeper.jar"
	// ZooKeeperMain is the replicated server's main class.
	ZooKeeperMain = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

	// The ports, the same on every member (each has its own address).
	ZooKeeperClientPort   = 2181
	ZooKeeperQuorumPort   = 2888 // followers to the leader
	ZooKeeperElectionPort = 3888 // leader election
	// ZooKeeperAdminPort is the AdminServer's HTTP port, on the member's loopback address
	// only: Status asks it who the leader is, which no four-letter word tells a follower.
	ZooKeeperAdminPort = 8080

	// ZooKeeperRoot is the znode under which the workload's keys live: key k is /dt/k.
	ZooKeeperRoot = "/dt"

	// zkCommitLogCount is ZooKeeper's zookeeper.commitLogCount (default 500): the
	// proposals a leader keeps in memory to bring a lagging follower up to date with a
	// DIFF; one further behind gets the leader's snapshot (or, when ZooKeeper judges it
	// smaller than a third of the snapshot, the transactions from its log files).
	zkCommitLogCount = 500
)

// zooKeeperClasspath adds to the server jar a logging backend (without one slf4j drops
// every line: no member log) and the servlet API Jetty needs for the AdminServer; both
// come with libzookeeper-java's dependencies.
var zooKeeperClasspath = []string{ZooKeeperJar, "/usr/share/java/slf4j-simple.jar", "/usr/share/java/servlet-api.jar"}

// zooKeeper runs ZooKeeper members in a JVM and talks to them with go-zookeeper/zk.
type zooKeeper struct{}

func newZooKeeper() System { return zooKeeper{} }

func (zooKeeper) Name() string { return "zookeeper" }

// Timing derived from Cluster.FailureTimeout t (seconds) as etcd's is: tickTime is
// 100·t ms (etcd's heartbeat), a follower or leader that hears nothing from the other
// side for syncLimit ticks (1000·t ms, etcd's election timeout) gives up on it and
// elects anew; a new leader waits initLimit ticks (2000·t ms) for a quorum to sync.
const (
	zkSyncLimit = 10
	zkInitLimit = 20
)

// zkTiming returns tickTime and cnxTimeout in ms for failure timeout t.
func zkTiming(t float64) (tick, cnx int) {
	if t <= 0 {
		t = DefaultFailureTimeout
	}
	ms := func(v float64) int { return max(1, int(math.Round(v))) }
	return ms(100 * t), ms(1000 * t)
}

func zkDataDir(c Cluster, i int) string { return filepath.Join(c.RunDir, "data", c.Members[i].Name) }

// zooCfg is member i's configuration file. Every member has myid i+1.
func zooCfg(c Cluster, i int) string {
	tick, cnx := zkTiming(c.FailureTimeout)
	var b strings.Builder
	fmt.Fprintf(&b, "# written by dt for member %s (myid %d) before each start\n", c.Members[i].Name, i+1)
	fmt.Fprintf(&b, "tickTime=%d\ninitLimit=%d\nsyncLimit=%d\n", tick, zkInitLimit, zkSyncLimit)
	// Connecting to a peer during an election: ZooKeeper's default is 5 s, which would
	// make elections under a partition wait on the cut peer far longer than the failure
	// timeout; it becomes a system property (zookeeper.cnxTimeout).
	fmt.Fprintf(&b, "cnxTimeout=%d\n", cnx)
	fmt.Fprintf(&b, "dataDir=%s\n", zkDataDir(c, i))
	fmt.Fprintf(&b, "clientPort=%d\n", ZooKeeperClientPort)
	admin := "127.0.0.1"
	if c.SharedNetns {
		// Members share loopback: each listens on its own address only.
		fmt.Fprintf(&b, "clientPortAddress=%s\n", c.Members[i].IP)
		admin = c.Members[i].IP
	}
	b.WriteString("4lw.commands.whitelist=srvr,mntr,conf,ruok,stat,cons,isro\n")
	fmt.Fprintf(&b, "admin.enableServer=true\nadmin.serverAddress=%s\nadmin.serverPort=%d\n", admin, ZooKeeperAdminPort)
	if c.SnapshotCount > 0 {
		// A snapshot after a random number of transactions in [snapCount/2+1, snapCount].
		fmt.Fprintf(&b, "snapCount=%d\n", c.SnapshotCount)
	}
	for j, m := range c.Members {
		fmt.Fprintf(&b, "server.%d=%s:%d:%d\n", j+1, m.IP, ZooKeeperQuorumPort, ZooKeeperElectionPort)
	}
	return b.String()
}

// MemberCommand starts member i with data, zoo.cfg and myid in RUN/data/NAME (written
// before every start: Command.Files) and its log in RUN/logs/NAME.log. A rejoining member
// starts the same way: ZooKeeper finds its state in the data dir. The JVM is kept small
// (256 MiB heap, serial GC: 3–5 members share 2 cores) and writes no perf data under /tmp.
//
// Equivalent to:
//
//	java -Xmx256m -XX:+UseSerialGC -XX:-UsePerfData ... \
//	  -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar:/usr/share/java/servlet-api.jar \
//	  org.apache.zookeeper.server.quorum.QuorumPeerMain RUN/data/s1/zoo.cfg
func (z zooKeeper) MemberCommand(c Cluster, i int, rejoin bool) Command {
	bin := c.Bin
	if bin == "" {
		bin = ZooKeeperJava
	}
	dataDir := zkDataDir(c, i)
	cfg := filepath.Join(dataDir, "zoo.cfg")
	return Command{
		Argv: []string{
			bin,
			"-Xmx256m", "-Xms32m", "-XX:+UseSerialGC", "-XX:-UsePerfData",
			"-Djava.net.preferIPv4Stack=true",
			"-Dorg.slf4j.simpleLogger.showDateTime=true",
			"-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
			// Status's four-letter words, ten a second, would each log a line.
			"-Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.server.NIOServerCnxn=warn",
			"-cp", strings.Join(zooKeeperClasspath, ":"),
			ZooKeeperMain, cfg,
		},
		Dir:     c.RunDir,
		DataDir: dataDir,
		Log:     filepath.Join(c.RunDir, "logs", c.Members[i].Name+".log"),
		Files: []File{
			{Path: cfg, Data: []byte(zooCfg(c, i))},
			{Path: filepath.Join(dataDir, "myid"), Data: []byte(strconv.Itoa(i+1) + "\n")},
		},
	}
}

func zkAddr(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(ZooKeeperClientPort)) }

// ClientEndpoints returns IP:2181 for every member, as ZooKeeper connect strings name them.
func (zooKeeper) ClientEndpoints(c Cluster) []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = zkAddr(m.IP)
	}
	return eps
}

// LocalEndpoint is 127.0.0.1:2181, or the member's IP:2181 with SharedNetns.
func (zooKeeper) LocalEndpoint(c Cluster, i int) string {
	if c.SharedNetns {
		return zkAddr(c.Members[i].IP)
	}
	return zkAddr("127.0.0.1")
}

// ClientEnv sets ZK_SERVERS to the connect string (zkCli.sh -server $ZK_SERVERS).
func (z zooKeeper) ClientEnv(c Cluster) []string {
	return []string{"ZK_SERVERS=" + strings.Join(z.ClientEndpoints(c), ",")}
}

// CLI is ZooKeeper's command-line client (ZooKeeperMain, what Debian's zkCli.sh runs)
// connected to every member; with arguments it runs one command and exits. It is started
// as zkCli.sh starts it but with slf4j's no-op backend, so that each call does not print
// six lines of warnings about a missing one.
func (z zooKeeper) CLI(c Cluster) CLI {
	bin := c.Bin
	if bin == "" {
		bin = ZooKeeperJava
	}
	argv := []string{bin, "-XX:-UsePerfData", "-cp", ZooKeeperJar + ":/usr/share/java/slf4j-nop.jar",
		"org.apache.zookeeper.ZooKeeperMain", "-server", strings.Join(z.ClientEndpoints(c), ",")}
	return CLI{Name: "zkCli", Argv: argv,
		Summary:  "zkCli.sh in a client node's namespace, connected to the cluster (`zkCli ls -R /dt`)",
		Complete: []string{"ls", "get", "set", "create", "delete", "stat", "sync", "-R", ZooKeeperRoot}}
}

// Ports are the client, quorum, election and admin ports.
func (zooKeeper) Ports() []int {
	return []int{ZooKeeperClientPort, ZooKeeperQuorumPort, ZooKeeperElectionPort, ZooKeeperAdminPort}
}

// Check reports a missing JVM or ZooKeeper jar with the package that provides it.
func (zooKeeper) Check(c Cluster) error {
	bin := c.Bin
	if bin == "" {
		bin = ZooKeeperJava
	}
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("zookeeper: java %s not found (apt-get install zookeeper, which pulls a JRE): %w", bin, err)
	}
	for _, jar := range zooKeeperClasspath {
		if _, err := os.Stat(jar); err != nil {
			return fmt.Errorf("zookeeper: %s not found (apt-get install zookeeper): %w", jar, err)
		}
	}
	return nil
}

// Version is what the jar says of itself ("Apache ZooKeeper, version 3.8.0 ...").
func (zooKeeper) Version(bin string) string {
	if bin == "" {
		bin = ZooKeeperJava
	}
	out, err := exec.Command(bin, "-XX:-UsePerfData", "-cp", ZooKeeperJar, "org.apache.zookeeper.version.VersionInfoMain").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// CatchUpEntries is the leader's in-memory commit log (zookeeper.commitLogCount): a member
// behind the newest snapshot by more than that is not sent a DIFF from memory.
func (zooKeeper) CatchUpEntries() uint64 { return zkCommitLogCount }

// SnapshotIndex is the zxid of the newest snapshot in a member's data dir: ZooKeeper
// names them version-2/snapshot.<zxid in hex>. 0 when there is none yet.
func (zooKeeper) SnapshotIndex(dataDir string) (uint64, error) {
	entries, err := os.ReadDir(filepath.Join(dataDir, "version-2"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var newest uint64
	for _, en := range entries {
		hex, ok := strings.CutPrefix(en.Name(), "snapshot.")
		if !ok {
			continue
		}
		if z, err := strconv.ParseUint(hex, 16, 64); err == nil {
			newest = max(newest, z)
		}
	}
	return newest, nil
}

// Status ----------------------------------------------------------------------------

// zkNotServing is what every four-letter word (and admin command) answers while the
// member is not in a quorum: electing, or cut off from the others.
const zkNotServing = "This ZooKeeper instance is not currently serving requests"

// fourLetter sends a four-letter word to addr and returns the whole answer (the server
// closes the connection after it).
func fourLetter(ctx context.Context, addr, word string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, word); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return "", fmt.Errorf("%s: %w", word, err)
	}
	return string(b), nil
}

// srvr is what the srvr four-letter word tells.
type srvr struct {
	Serving bool   // false: not in a quorum (electing)
	Mode    string // leader, follower, observer, standalone
	Zxid    uint64
}

// parseSrvr reads srvr's answer:
//
//	Zookeeper version: 3.8.0-..., built on ...
//	Zxid: 0x100000002
//	Mode: leader
func parseSrvr(s string) (srvr, error) {
	if strings.HasPrefix(strings.TrimSpace(s), zkNotServing) {
		return srvr{}, nil
	}
	out := srvr{Serving: true}
	var haveZxid bool
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Zxid":
			z, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
			if err != nil {
				return srvr{}, fmt.Errorf("srvr: Zxid %q: %w", v, err)
			}
			out.Zxid, haveZxid = z, true
		case "Mode":
			out.Mode = v
		}
	}
	if out.Mode == "" || !haveZxid {
		return srvr{}, fmt.Errorf("srvr: no Mode or Zxid in %q", oneLine(s, 200))
	}
	return out, nil
}

// parseKeyValues reads conf's key=value lines (and mntr's key<TAB>value lines).
func parseKeyValues(s string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			k, v, ok = strings.Cut(line, "\t")
		}
		if ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// zkEpoch is a zxid's epoch (ZooKeeper's term): its high 32 bits; the low 32 bits count
// the transactions within the epoch.
func zkEpoch(zxid uint64) uint64 { return zxid >> 32 }

// readEpoch reads a member's currentEpoch file: the epoch of the last leader it
// acknowledged, written when it syncs with a new leader, before any transaction of the
// new epoch gives it a zxid that says so.
func readEpoch(versionDir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(versionDir, "currentEpoch"))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// zkIdentities remembers each endpoint's myid and data dir (conf's serverId and
// dataDir), which do not change while its process lives: polled ten times a second, a
// member then answers one four-letter word per poll instead of two. An endpoint is
// forgotten when it does not answer (its process may be replaced) and by
// CloseStatusConns.
var zkIdentities sync.Map // endpoint -> zkIdent

type zkIdent struct{ id, dir string }

func zkIdentity(ctx context.Context, endpoint string) (id, dir string, err error) {
	if v, ok := zkIdentities.Load(endpoint); ok {
		i := v.(zkIdent)
		return i.id, i.dir, nil
	}
	out, err := fourLetter(ctx, endpoint, "conf")
	if err != nil {
		return "", "", err
	}
	conf := parseKeyValues(out)
	i := zkIdent{id: conf["serverId"], dir: conf["dataDir"]}
	if i.id == "" {
		// Not serving between srvr and conf, or not a ZooKeeper answer: ask again next time.
		return "", "", fmt.Errorf("conf: no serverId in %q", oneLine(out, 200))
	}
	zkIdentities.Store(endpoint, i)
	return i.id, i.dir, nil
}

func zkForgetEndpoint(endpoint string) { zkIdentities.Delete(endpoint) }

func zkForget() { zkIdentities.Clear() }

// zkLeader is the AdminServer's answer to /commands/leader.
type zkLeader struct {
	IsLeader bool    `json:"is_leader"`
	LeaderID int64   `json:"leader_id"`
	Error    *string `json:"error"`
}

// adminLeader asks the member's AdminServer (its address, ZooKeeperAdminPort) for the
// leader's myid.
func adminLeader(ctx context.Context, host string) (zkLeader, error) {
	u := "http://" + net.JoinHostPort(host, strconv.Itoa(ZooKeeperAdminPort)) + "/commands/leader"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return zkLeader{}, err
	}
	resp, err := statusHTTP.Do(req)
	if err != nil {
		return zkLeader{}, err
	}
	defer resp.Body.Close()
	var l zkLeader
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return zkLeader{}, fmt.Errorf("%s: %s: %w", u, resp.Status, err)
	}
	if l.Error != nil && *l.Error != "" {
		return l, fmt.Errorf("%s: %s", u, *l.Error)
	}
	return l, nil
}

// Status reads a member's own view through its client port: srvr for its mode and zxid
// (term = the zxid's epoch, index = the zxid), conf for its myid and data dir, whose
// currentEpoch file gives a follower its leader's epoch before any transaction of that
// epoch reaches it; and the AdminServer's leader command for the leader's myid, which
// no four-letter word tells a follower. A member that is electing (or cut off from a
// quorum) answers "not currently serving requests": role looking, not healthy, no term.
// The leader reports its own myid as LeaderID, so the monitor's rule (the leader named
// by the reports of the highest term, when it answers itself) holds unchanged.
func (zooKeeper) Status(ctx context.Context, endpoint string) (MemberStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	fail := func(err error) (MemberStatus, error) {
		err = fmt.Errorf("zookeeper status %s: %w", endpoint, err)
		return MemberStatus{Error: err.Error()}, err
	}
	out, err := fourLetter(ctx, endpoint, "srvr")
	if err != nil {
		zkForgetEndpoint(endpoint)
		return fail(err)
	}
	sv, err := parseSrvr(out)
	if err != nil {
		return fail(err)
	}
	if !sv.Serving {
		return MemberStatus{Role: "looking"}, nil
	}
	st := MemberStatus{Term: zkEpoch(sv.Zxid), Index: sv.Zxid, Role: sv.Mode}
	id, dir, err := zkIdentity(ctx, endpoint)
	if err != nil {
		return fail(err)
	}
	st.ID = id
	if e, err := readEpoch(dir); err == nil {
		st.Term = max(st.Term, e)
	}
	switch sv.Mode {
	case "leader", "standalone":
		st.LeaderID, st.Healthy = st.ID, st.ID != ""
		return st, nil
	}
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		return fail(err)
	}
	l, err := adminLeader(ctx, host)
	if err != nil {
		// It answers, but cannot say whom it follows.
		st.Error = "zookeeper admin server: " + err.Error()
		return st, nil
	}
	if l.LeaderID > 0 {
		st.LeaderID, st.Healthy = strconv.FormatInt(l.LeaderID, 10), true
	}
	return st, nil
}

// The client --------------------------------------------------------------------------

// zkSessionTimeout is the session each client asks for; the server bounds it to
// [2, 20] ticks (0.2–2 s at the default failure timeout). The client reconnects and, once
// a session has expired, opens a new one by itself; the workload keeps no ephemeral nodes.
const zkSessionTimeout = 4 * time.Second

// zkEndpoint is one connection (one session) to one member.
type zkEndpoint struct {
	conn   *zk.Conn
	redial *zkRedial
	mu     sync.Mutex
	// ready is closed while the connection has a session.
	ready chan struct{}
	open  bool
}

func (e *zkEndpoint) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case ev.State == zk.StateHasSession && !e.open:
		close(e.ready)
		e.open = true
	case ev.State != zk.StateHasSession && e.open:
		e.ready = make(chan struct{})
		e.open = false
	}
}

func (e *zkEndpoint) readyChan() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ready
}

// zkRedial is the host provider and dialer of one client, which talks to one member.
// go-zookeeper's own provider waits a whole second before every reconnection to a
// single server, so each member that leaves the quorum for an election would look
// unavailable for a second longer than it is: the client's choice, not the system's
// behaviour. Here the first redial after a lost session is at once and further ones back
// off from 100 ms to 1 s, as the etcd client's gRPC reconnection does.
type zkRedial struct {
	server string
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	fails  int // dials since the last session
}

func newZKRedial() *zkRedial { return &zkRedial{closed: make(chan struct{})} }

func (r *zkRedial) Init(servers []string) error {
	if len(servers) != 1 {
		return fmt.Errorf("zookeeper client: one server per connection, got %v", servers)
	}
	r.server = servers[0]
	return nil
}

func (r *zkRedial) Len() int { return 1 }

// Next never asks go-zookeeper to wait (retryStart), except once the client is closed:
// that is when its connection loop looks at whether it should quit.
func (r *zkRedial) Next() (string, bool) {
	select {
	case <-r.closed:
		return r.server, true
	default:
		return r.server, false
	}
}

// Connected is called when a session is established.
func (r *zkRedial) Connected() {
	r.mu.Lock()
	r.fails = 0
	r.mu.Unlock()
}

func (r *zkRedial) close() { r.once.Do(func() { close(r.closed) }) }

// dial backs off before every dial after the first since the last session.
func (r *zkRedial) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	r.mu.Lock()
	n := r.fails
	r.fails++
	r.mu.Unlock()
	if n > 0 {
		wait := min(time.Duration(float64(100*time.Millisecond)*math.Pow(1.6, float64(n-1))), time.Second)
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.closed:
			return nil, zk.ErrClosing
		}
	}
	return net.DialTimeout(network, addr, timeout)
}

// zkKV implements workloads.TargetedKV over one ZooKeeper session per endpoint, with the
// same round robin and circuit breakers as the etcd client (balancer).
type zkKV struct {
	*balancer
	endpoints []string
	eps       []*zkEndpoint
	timeout   time.Duration
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// NewKV connects one go-zookeeper client to each endpoint (host:port), without waiting:
// it succeeds while members are down. Put is set, or create when the znode does not
// exist yet (creating /dt first if need be); Get is sync then get: a plain get is served
// from the member's own copy, which may lag the leader, so reads through different
// sessions would not be linearizable — sync makes the member catch up with the leader
// first (ZooKeeper's own recipe; sync is not a quorum operation, so a deposed leader that
// does not know it yet can still answer it). An operation waits for its connection to
// have a session, then for the answer, bounded by opTimeout and its context; one that
// runs out is failed (a write that did not answer may still have taken effect: the
// history treats every failed write as indeterminate).
func (zooKeeper) NewKV(endpoints []string, opTimeout time.Duration) (workloads.KV, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("zookeeper client: no endpoints")
	}
	kv := &zkKV{balancer: newBalancer(len(endpoints), true), endpoints: endpoints, timeout: opTimeout}
	for _, ep := range endpoints {
		e := &zkEndpoint{ready: make(chan struct{}), redial: newZKRedial()}
		conn, _, err := zk.Connect([]string{ep}, zkSessionTimeout,
			zk.WithHostProvider(e.redial), zk.WithDialer(e.redial.dial),
			zk.WithLogger(nopLogger{}), zk.WithLogInfo(false), zk.WithEventCallback(e.onEvent))
		if err != nil {
			kv.Close()
			return nil, fmt.Errorf("zookeeper client for %s: %w", ep, err)
		}
		e.conn = conn
		kv.eps = append(kv.eps, e)
	}
	return kv, nil
}

// zkPath is the znode of a workload key.
func zkPath(key string) string { return ZooKeeperRoot + "/" + url.PathEscape(key) }

var zkACL = zk.WorldACL(zk.PermAll)

// do runs op on endpoint i once it has a session, bounded by the timeout and ctx.
func (k *zkKV) do(ctx context.Context, i int, what string, op func(c *zk.Conn) error) error {
	if k.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, k.timeout)
		defer cancel()
	}
	e := k.eps[i]
	select {
	case <-e.readyChan():
	case <-ctx.Done():
		return fmt.Errorf("zookeeper %s: no session with %s: %w", what, k.endpoints[i], ctx.Err())
	}
	// go-zookeeper's calls take no context: the call goes on in the background and its
	// answer, if it ever comes, is dropped.
	done := make(chan error, 1)
	go func() { done <- op(e.conn) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("zookeeper %s: %w", what, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("zookeeper %s: %w", what, ctx.Err())
	}
}

// setOrCreate writes data at path: set, else create, else (created meanwhile) set.
func setOrCreate(c *zk.Conn, path string, data []byte) error {
	_, err := c.Set(path, data, -1)
	if !errors.Is(err, zk.ErrNoNode) {
		return err
	}
	_, err = c.Create(path, data, 0, zkACL)
	if errors.Is(err, zk.ErrNoNode) { // no /dt yet
		if _, err := c.Create(ZooKeeperRoot, nil, 0, zkACL); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return err
		}
		_, err = c.Create(path, data, 0, zkACL)
	}
	if errors.Is(err, zk.ErrNodeExists) {
		_, err = c.Set(path, data, -1)
	}
	return err
}

func (k *zkKV) PutTarget(ctx context.Context, key, value string) (string, error) {
	i := k.pick()
	err := k.do(ctx, i, "set", func(c *zk.Conn) error { return setOrCreate(c, zkPath(key), []byte(value)) })
	if err != nil {
		k.failed(i)
		return k.endpoints[i], err
	}
	k.succeeded(i)
	return k.endpoints[i], nil
}

func (k *zkKV) GetTarget(ctx context.Context, key string) (string, bool, string, error) {
	i := k.pick()
	var (
		val   []byte
		found bool
	)
	err := k.do(ctx, i, "get", func(c *zk.Conn) error {
		p := zkPath(key)
		if _, err := c.Sync(p); err != nil {
			return err
		}
		v, _, err := c.Get(p)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		val, found = v, err == nil
		return err
	})
	if err != nil {
		k.failed(i)
		return "", false, k.endpoints[i], err
	}
	k.succeeded(i)
	return string(val), found, k.endpoints[i], nil
}

func (k *zkKV) Put(ctx context.Context, key, value string) error {
	_, err := k.PutTarget(ctx, key, value)
	return err
}

func (k *zkKV) Get(ctx context.Context, key string) (string, bool, error) {
	v, ok, _, err := k.GetTarget(ctx, key)
	return v, ok, err
}

// Target is the endpoint picked by the most recent operation.
func (k *zkKV) Target() string { return k.endpoints[k.lastPicked()] }

// Close closes every session, in parallel: closing one whose member is down waits a
// moment for the close request to go out.
func (k *zkKV) Close() error {
	var wg sync.WaitGroup
	for _, e := range k.eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.redial.close()
			e.conn.Close()
		}()
	}
	wg.Wait()
	return nil
}
