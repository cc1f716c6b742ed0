// Package agent is the process dt runs inside each node's network namespace, and the
// controller's client for it.
//
// An agent serves a small HTTP/JSON API on a unix socket in the run directory, so that a
// partition of the emulated network never cuts the harness off from its agents. It
// supervises the node's processes (start, stop, kill, pause, continue, restart), backs up
// and cleans data directories under the run directory, reads the local system member's
// status from inside the namespace, and runs workload clients whose operation records it
// streams back as NDJSON. It never talks to other agents.
//
// Routes (every body is JSON; errors are {"error": "..."} with a 4xx/5xx status):
//
//	GET  /health                          -> Health
//	POST /shutdown                        kill every process, remove the socket, exit
//	GET  /procs                           -> []ProcStatus, sorted by name
//	POST /procs              ProcSpec     -> 201 ProcStatus (409 if the name is running)
//	GET  /procs/{name}                    -> ProcStatus (404 if unknown)
//	POST /procs/{name}/stop?grace=5s      SIGTERM, SIGKILL after grace -> ProcStatus
//	POST /procs/{name}/kill               SIGKILL to the process group -> ProcStatus
//	POST /procs/{name}/pause              SIGSTOP -> ProcStatus (409 unless running)
//	POST /procs/{name}/continue           SIGCONT -> ProcStatus (409 unless paused)
//	POST /procs/{name}/restart?grace=5s   stop if alive, start the same spec again -> ProcStatus
//	POST /dirs/backup        BackupRequest -> BackupResult (paths inside the run dir only)
//	POST /dirs/clean         CleanRequest  -> CleanResult
//	GET  /system/status?system=NAME&endpoint=URL -> systems.MemberStatus
//	POST /workload           workloads.Spec -> NDJSON stream of records.Op
//	POST /workload/stop?client=NAME       end that workload's schedule; its stream ends ok
//	POST /probe              ProbeRequest  -> ProbeResult: one HTTP request made from inside
//	                                      the namespace; 200 even when the probe failed (see
//	                                      ProbeResult.OK), 400 for a URL not http(s)://
//	/shaping/...                          link impairments (shaping.go)
//	/disk/...                             the disk layer over data dirs (disk.go)
//
// The workload stream ends with the HTTP trailers Dt-Status ("ok" or "error") and
// Dt-Error (the run's error), so a cut stream can be told from a finished one.
package agent

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Process states reported in ProcStatus.State.
const (
	StateRunning = "running"
	StatePaused  = "paused"
	StateExited  = "exited"  // ended on its own
	StateKilled  = "killed"  // ended by Kill
	StateStopped = "stopped" // ended by Stop: SIGTERM, or SIGKILL once the grace period ran out
)

// Environment variables every supervised process (and every launched agent) carries, so
// that `dt clean` can find leaked processes of a run by scanning /proc/*/environ.
const (
	EnvRunID = "DT_RUN_ID"
	EnvNode  = "DT_NODE"
)

// DefaultGrace is how long Stop waits after SIGTERM before it sends SIGKILL when the
// request names no grace period.
const DefaultGrace = 5 * time.Second

// ProcSpec describes a process for the agent to start. Argv is executed directly, never
// through a shell.
type ProcSpec struct {
	Name string   `json:"name"`          // unique per agent: letters, digits, '.', '_', '-'
	Argv []string `json:"argv"`          // argv[0] is looked up in the agent's PATH
	Env  []string `json:"env,omitempty"` // added to the agent's environment (KEY=VALUE)
	Dir  string   `json:"dir,omitempty"` // working directory; "" = the agent's
	Log  string   `json:"log"`           // stdout and stderr are appended here
}

// ProcStatus is the state of a supervised process's latest incarnation.
type ProcStatus struct {
	Name      string    `json:"name"`
	Pid       int       `json:"pid"`
	State     string    `json:"state"`            // one of the State* constants
	ExitCode  int       `json:"exit_code"`        // once ended; -1 when a signal ended it
	Signal    string    `json:"signal,omitempty"` // the signal that ended it, if any
	StartedAt time.Time `json:"started_at"`
	ExitedAt  time.Time `json:"exited_at,omitzero"`
	Restarts  int       `json:"restarts"` // starts of this name after the first
}

// Alive reports whether the process has not ended (running or paused).
func (s ProcStatus) Alive() bool { return s.State == StateRunning || s.State == StatePaused }

// Health is the agent's answer to GET /health.
type Health struct {
	Node  string `json:"node"`
	RunID string `json:"run_id"`
	Pid   int    `json:"pid"`
	Netns string `json:"netns"` // the agent's /proc/self/ns/net link, e.g. "net:[4026532281]"
	Procs int    `json:"procs"` // supervised processes still alive
}

// BackupRequest asks for the tree at Src to be copied to Dst; both must be absolute
// paths inside the agent's run directory and Dst must not exist yet.
type BackupRequest struct {
	Src string `json:"src"`
	Dst string `json:"dst"`
}

// BackupResult says what a backup copied.
type BackupResult struct {
	Src   string `json:"src"`
	Dst   string `json:"dst"`
	Files int    `json:"files"`
	Bytes int64  `json:"bytes"`
}

// CleanRequest asks for Path (absolute, inside the run directory) to be removed.
type CleanRequest struct {
	Path string `json:"path"`
}

// CleanResult says whether there was anything to remove.
type CleanResult struct {
	Path    string `json:"path"`
	Removed bool   `json:"removed"`
}

// Sentinel errors an *APIError matches with errors.Is, by HTTP status.
var (
	ErrBadRequest = errors.New("bad request") // 400
	ErrNotFound   = errors.New("not found")   // 404: unknown process, missing directory
	ErrConflict   = errors.New("conflict")    // 409: the process is in the wrong state
)

// APIError is an error answer from an agent.
type APIError struct {
	Method     string
	Path       string
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("agent %s %s: %d %s: %s", e.Method, e.Path, e.StatusCode,
		http.StatusText(e.StatusCode), e.Message)
}

// Is matches ErrBadRequest, ErrNotFound and ErrConflict by status code.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrBadRequest:
		return e.StatusCode == http.StatusBadRequest
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	}
	return false
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

// statusError carries the HTTP status a handler answers with.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// statusCode is the HTTP status a handler answers err with.
func statusCode(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.code
	}
	return http.StatusInternalServerError
}

func badRequest(format string, args ...any) error {
	return &statusError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &statusError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &statusError{http.StatusConflict, fmt.Sprintf(format, args...)}
}

func unavailable(format string, args ...any) error {
	return &statusError{http.StatusServiceUnavailable, fmt.Sprintf(format, args...)}
}

// Trailers that close a workload stream.
const (
	trailerStatus = "Dt-Status" // "ok" or "error"
	trailerError  = "Dt-Error"  // the run's error text
)
