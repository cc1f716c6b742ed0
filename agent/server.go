package agent

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/workloads"
)

// Options configures an agent process; the `dt agent` flags fill it.
type Options struct {
	Socket    string // unix socket to serve on (at most 107 bytes)
	RunDir    string // the run directory; data dir requests are confined to it
	RunID     string // exported to every child as DT_RUN_ID
	Node      string // exported to every child as DT_NODE
	ParentPid int    // exit when this process ends; 0 = do not watch
	Logger    *slog.Logger
}

// Flag names shared by RegisterFlags and Launch.
const (
	flagSocket    = "socket"
	flagRunDir    = "run-dir"
	flagRunID     = "run-id"
	flagNode      = "node"
	flagParentPid = "parent-pid"
)

// RegisterFlags defines the agent's flags on fs, bound to o. cobra commands add them with
// Flags().AddGoFlagSet.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Socket, flagSocket, "", "unix socket to serve the API on")
	fs.StringVar(&o.RunDir, flagRunDir, "", "run directory; backup/clean requests are confined to it")
	fs.StringVar(&o.RunID, flagRunID, "", "run id, exported to children as "+EnvRunID)
	fs.StringVar(&o.Node, flagNode, "", "node name, exported to children as "+EnvNode)
	fs.IntVar(&o.ParentPid, flagParentPid, 0, "exit (killing all children) when this process ends; 0 = never")
}

// args renders o as the command line RegisterFlags parses.
func (o Options) args() []string {
	return []string{
		"--" + flagSocket, o.Socket,
		"--" + flagRunDir, o.RunDir,
		"--" + flagRunID, o.RunID,
		"--" + flagNode, o.Node,
		"--" + flagParentPid, strconv.Itoa(o.ParentPid),
	}
}

// parentPollInterval is how often the agent checks that its controller is still there.
const parentPollInterval = 200 * time.Millisecond

// maxSocketPath is the longest path a unix socket address holds (sun_path less its NUL).
const maxSocketPath = 107

// Run serves the agent API until ctx is cancelled, the parent process ends, or a
// shutdown request arrives. On the way out it kills every supervised process and
// removes the socket.
func Run(ctx context.Context, opts Options) error {
	srv, err := newServer(opts)
	if err != nil {
		return err
	}
	return srv.serve(ctx)
}

// server is one agent: its supervisor, its directories and the hooks to the system and
// workload registries (replaced in tests).
type server struct {
	opts   Options
	log    *slog.Logger
	sup    *supervisor
	dirs   dirs
	socket string

	lookupSystem func(name string) (systems.System, error)
	runWorkload  func(ctx context.Context, spec workloads.Spec, kv workloads.KV, emit func(records.Op)) error

	shutdownOnce sync.Once
	shutdownc    chan struct{}

	links *linkShaper // link impairments on this node's interfaces (shaping.go)
	disks disks       // disk layers over data dirs (disk.go)

	stopsMu sync.Mutex
	stops   map[string]context.CancelFunc // client name → stop issuing its workload's ops
}

func newServer(opts Options) (*server, error) {
	for _, f := range []struct{ name, v string }{{flagSocket, opts.Socket}, {flagRunDir, opts.RunDir}, {flagRunID, opts.RunID}, {flagNode, opts.Node}} {
		if f.v == "" {
			return nil, fmt.Errorf("agent: --%s is required", f.name)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", opts.Node)
	sock, err := filepath.Abs(opts.Socket)
	if err != nil {
		return nil, fmt.Errorf("agent: socket path: %w", err)
	}
	if len(sock) > maxSocketPath {
		return nil, fmt.Errorf("agent: socket path %q is %d bytes; unix sockets allow at most %d", sock, len(sock), maxSocketPath)
	}
	if err := os.MkdirAll(opts.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("agent: create run dir: %w", err)
	}
	root, err := filepath.Abs(opts.RunDir)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return nil, fmt.Errorf("agent: resolve run dir %q: %w", opts.RunDir, err)
	}
	if real, err := resolveExisting(sock); err == nil {
		sock = real
	}
	return &server{
		opts:         opts,
		log:          log,
		dirs:         dirs{root: root, socket: sock, log: log},
		socket:       sock,
		lookupSystem: systems.Lookup,
		runWorkload:  workloads.Run,
		shutdownc:    make(chan struct{}),
	}, nil
}

func (s *server) serve(ctx context.Context) error {
	ln, err := listenUnix(s.socket)
	if err != nil {
		return err
	}
	s.sup = newSupervisor(s.opts.RunID, s.opts.Node, s.log)

	// Streams (workloads) hang off base, so the shutdown below can end them.
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	hs := &http.Server{
		Handler:           s.routes(),
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	parentGone := watchParent(base, s.opts.ParentPid, parentPollInterval, s.log)
	s.log.Info("agent serving", "socket", s.socket, "run_dir", s.dirs.root, "pid", os.Getpid(), "parent_pid", s.opts.ParentPid)

	var serveErr error
	select {
	case <-ctx.Done():
		s.log.Info("agent stopping", "reason", context.Cause(ctx))
	case <-parentGone:
		s.log.Info("agent stopping", "reason", "parent process ended", "parent_pid", s.opts.ParentPid)
	case <-s.shutdownc:
		s.log.Info("agent stopping", "reason", "shutdown requested")
	case serveErr = <-errc:
		s.log.Error("agent stopping", "reason", "serve failed", "err", serveErr)
		serveErr = fmt.Errorf("agent: serve %s: %w", s.socket, serveErr)
	}
	cancel()
	s.sup.killAll(5 * time.Second)
	s.closeDisks()
	s.closeShaping()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	if err := os.Remove(s.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove socket", "socket", s.socket, "err", err)
	}
	s.log.Info("agent stopped")
	return serveErr
}

// listenUnix listens on path, replacing a stale socket file but never a live agent's.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("agent: create socket dir: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("agent: another process is serving on %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("agent: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent: listen on %s: %w", path, err)
	}
	// The API starts processes: only the owner (root) may use it.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent: chmod socket: %w", err)
	}
	return ln, nil
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("POST /shutdown", s.handleShutdown)
	mux.HandleFunc("GET /procs", s.handleList)
	mux.HandleFunc("POST /procs", handleJSON(http.StatusCreated, func(_ *http.Request, spec ProcSpec) (ProcStatus, error) {
		return s.sup.start(spec)
	}))
	mux.HandleFunc("GET /procs/{name}", s.handleStatus)
	mux.HandleFunc("POST /procs/{name}/{action}", s.handleAction)
	mux.HandleFunc("POST /dirs/backup", handleJSON(http.StatusOK, func(r *http.Request, req BackupRequest) (BackupResult, error) {
		return s.dirs.backup(r.Context(), req)
	}))
	mux.HandleFunc("POST /dirs/clean", handleJSON(http.StatusOK, func(_ *http.Request, req CleanRequest) (CleanResult, error) {
		// A data dir under the disk layer is a mount point: it is emptied, not removed.
		if p, err := s.dirs.resolve("clean", req.Path, false); err == nil {
			if mounted, err := s.cleanDisk(p); mounted {
				return CleanResult{Path: p, Removed: err == nil}, err
			}
		}
		return s.dirs.clean(req)
	}))
	mux.HandleFunc("GET /system/status", s.handleSystemStatus)
	mux.HandleFunc("POST /workload", s.handleWorkload)
	mux.HandleFunc("POST /workload/stop", s.handleWorkloadStop)
	mux.HandleFunc("POST /probe", s.handleProbe)
	s.shapingRoutes(mux)
	s.diskRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notRouted(mux, w, r) })
	return mux
}

// notRouted answers requests no route took, in JSON: 405 when the path exists for
// another method, 404 otherwise.
func notRouted(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, &statusError{http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed; use %v", r.Method, r.URL.Path, allowed)})
		return
	}
	writeError(w, notFound("no route %s %s", r.Method, r.URL.Path))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusCode(err), errorBody{Error: err.Error()})
}

// maxBody bounds request bodies; every request is a small JSON document.
const maxBody = 1 << 20

// decodeJSON strictly decodes one JSON document from the request body into v.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("request body is empty; want a JSON %T", v)
		}
		return badRequest("decode request body as %T: %v", v, err)
	}
	if dec.More() {
		return badRequest("request body holds more than one JSON document")
	}
	return nil
}

// handleJSON is a handler that decodes the request body into a Req (decodeJSON), calls
// call, and answers code with its result, or the error's status (writeError).
func handleJSON[Req, Res any](code int, call func(r *http.Request, req Req) (Res, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decodeJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
		res, err := call(r, req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, code, res)
	}
}

func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		ns = "unknown: " + err.Error()
	}
	writeJSON(w, http.StatusOK, Health{
		Node:  s.opts.Node,
		RunID: s.opts.RunID,
		Pid:   os.Getpid(),
		Netns: ns,
		Procs: s.sup.alive(),
	})
}

func (s *server) handleShutdown(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.shutdownOnce.Do(func() { close(s.shutdownc) })
}

func (s *server) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.sup.list())
}

func (s *server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.sup.status(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// graceParam reads the optional ?grace= duration.
func graceParam(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("grace")
	if v == "" {
		return DefaultGrace, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, badRequest("grace %q: want a non-negative duration such as 5s or 500ms", v)
	}
	return d, nil
}

func (s *server) handleAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	var (
		st  ProcStatus
		err error
	)
	switch action {
	case "stop", "restart":
		var grace time.Duration
		if grace, err = graceParam(r); err != nil {
			break
		}
		if action == "stop" {
			st, err = s.sup.stop(r.Context(), name, grace)
		} else {
			st, err = s.sup.restart(r.Context(), name, grace)
		}
	case "kill":
		st, err = s.sup.kill(r.Context(), name)
	case "pause":
		st, err = s.sup.pause(r.Context(), name)
	case "continue":
		st, err = s.sup.resume(name)
	default:
		err = notFound("no action %q; want stop, kill, pause, continue or restart", action)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *server) handleSystemStatus(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name, endpoint := q.Get("system"), q.Get("endpoint")
	if name == "" || endpoint == "" {
		writeError(w, badRequest("system status needs the query parameters system and endpoint"))
		return
	}
	sys, err := s.lookupSystem(name)
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	st, err := sys.Status(r.Context(), endpoint)
	if err != nil {
		writeError(w, &statusError{http.StatusBadGateway, fmt.Sprintf("%s status of %s: %v", name, endpoint, err)})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// handleWorkload runs one workload client and streams its operations, one JSON line
// each, flushed as they happen. The run ends with the request: cancelling it on the
// controller's side stops the client.
func (s *server) handleWorkload(w http.ResponseWriter, r *http.Request) {
	var spec workloads.Spec
	if err := decodeJSON(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	// Check everything before the stream starts, while a 400 can still be sent.
	spec = spec.WithDefaults()
	if err := workloads.ValidateSpec(spec); err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	if spec.System == "" || len(spec.Endpoints) == 0 {
		writeError(w, badRequest("workload %s: system and endpoints are required", spec.Client))
		return
	}
	sys, err := s.lookupSystem(spec.System)
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	kv, err := sys.NewKV(spec.Endpoints, time.Duration(spec.OpTimeout*float64(time.Second)))
	if err != nil {
		writeError(w, fmt.Errorf("workload %s: build %s client: %w", spec.Client, spec.System, err))
		return
	}
	defer kv.Close()
	if err := workloads.CheckKV(spec, kv); err != nil {
		writeError(w, badRequest("workload %s: %v", spec.Client, err))
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Trailer", trailerStatus+", "+trailerError)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		s.log.Warn("workload: flush header", "client", spec.Client, "err", err)
	}

	var (
		mu       sync.Mutex // emit may be called from many goroutines
		enc      = json.NewEncoder(w)
		writeErr error
		n        int
	)
	emit := func(op records.Op) {
		mu.Lock()
		defer mu.Unlock()
		if writeErr != nil {
			return
		}
		if writeErr = enc.Encode(op); writeErr == nil {
			writeErr = rc.Flush()
		}
		if writeErr != nil {
			s.log.Warn("workload: stream broken, stopping client", "client", spec.Client, "err", writeErr)
			cancel()
			return
		}
		n++
	}
	// A stop request ends the schedule but not the stream: operations in flight still
	// complete and are recorded, so a stopped load leaves no write unaccounted for.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	s.stopsMu.Lock()
	if s.stops == nil {
		s.stops = map[string]context.CancelFunc{}
	}
	s.stops[spec.Client] = stopRun
	s.stopsMu.Unlock()
	defer func() {
		s.stopsMu.Lock()
		delete(s.stops, spec.Client)
		s.stopsMu.Unlock()
	}()
	s.log.Info("workload start", "client", spec.Client, "workload", spec.Name, "rate", spec.Rate, "duration", spec.Duration)
	runErr := s.runWorkload(runCtx, spec, kv, emit)
	mu.Lock()
	defer mu.Unlock()
	if runErr != nil {
		w.Header().Set(trailerStatus, "error")
		// A header value must stay on one line.
		w.Header().Set(trailerError, strings.Join(strings.Fields(runErr.Error()), " "))
	} else {
		w.Header().Set(trailerStatus, "ok")
	}
	s.log.Info("workload end", "client", spec.Client, "ops", n, "err", runErr)
}

// handleWorkloadStop ends the schedule of a running workload (POST /workload/stop?client=NAME):
// no new operations are issued, those in flight complete and are streamed, then the
// workload's stream ends with status ok. 404 when no workload of that client runs.
func (s *server) handleWorkloadStop(w http.ResponseWriter, r *http.Request) {
	client := r.URL.Query().Get("client")
	if client == "" {
		writeError(w, badRequest("workload stop: query parameter client is required"))
		return
	}
	s.stopsMu.Lock()
	stop, ok := s.stops[client]
	s.stopsMu.Unlock()
	if !ok {
		writeError(w, notFound("no workload of client %q runs here", client))
		return
	}
	stop()
	writeJSON(w, http.StatusOK, map[string]string{"client": client, "status": "stopping"})
}
