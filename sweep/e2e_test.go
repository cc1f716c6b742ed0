package sweep_test

// End-to-end tests of `dt sweep` with the real binary and real etcd: a small sweep is
// killed half-way (SIGKILL to its process group), the host cleaned with `dt clean`, and
// the same command re-run; then the sweep directory is checked as a user would read it.
// They need root, Open vSwitch and etcd, and skip saying which is missing.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/sweep"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// dtBinary is $DT_BIN (make test) or ./cmd/dt built once into a temporary directory.
func dtBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if b := os.Getenv("DT_BIN"); b != "" {
			binPath, binErr = filepath.Abs(b)
			return
		}
		dir, err := os.MkdirTemp("", "dt-sweep-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "dt")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/dtlab/dt/cmd/dt").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/dt: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// dtSweepBinary is dtBinary, which must have the sweep verb.
func dtSweepBinary(t testing.TB) string {
	t.Helper()
	bin := dtBinary(t)
	out, _ := exec.Command(bin, "sweep", "--help").CombinedOutput()
	if !bytes.Contains(out, []byte("dt sweep")) {
		t.Fatalf("%s has no sweep verb (add newSweepCmd() to verbs() in cmd/dt/root.go):\n%s", bin, out)
	}
	return bin
}

// needHost skips unless a real sweep can run here, and gives the test its own runtime
// dir so that it never sees other runs (and `dt clean` only touches its own).
func needHost(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: a sweep creates network namespaces, an OVS instance and etcd processes (CI runs as root)")
	}
	for _, bin := range []string{"/usr/bin/etcd"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("needs %s: apt-get install etcd-server", bin)
		}
	}
	if _, err := exec.LookPath("ovs-vswitchd"); err != nil {
		t.Skip("needs ovs-vswitchd: apt-get install openvswitch-switch")
	}
	rt, err := os.MkdirTemp("/tmp", "dtsw") // short: unix socket paths are limited to 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DT_RUNTIME_DIR", rt)
	t.Cleanup(func() { os.RemoveAll(rt) })
}

// TestRunFlagsAreSweepParameters: every `dt run` flag that sets a parameter can be set in
// a sweep file by the same name (the sweep's one table must follow registerRunFlags).
func TestRunFlagsAreSweepParameters(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil && os.Getenv("DT_BIN") == "" {
		t.Skip("needs the go tool (or $DT_BIN) to build dt")
	}
	out, err := exec.Command(dtBinary(t), "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("dt run --help: %v\n%s", err, out)
	}
	local, _, _ := strings.Cut(string(out), "Global Flags:")
	notParams := map[string]bool{"help": true, "debug": true, "seed": true, "results": true, "file": true, "replay": true, "faults": true,
		"system-opt": true} // a sweep sets it per key: system-opt.version
	params := sweep.ParamNames()
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z-]+)`).FindAllStringSubmatch(local, -1) {
		if !notParams[m[1]] && !slices.Contains(params, m[1]) {
			t.Errorf("dt run --%s cannot be set in a sweep file: add it to the table in sweep/params.go (or to notParams here if it is not a parameter)", m[1])
		}
	}
}

const e2eSweep = `# 2 faults × 2 rates × 2 repeats, short
name: e2e
base: {system: etcd, topology: simple, workload: uniform, duration: 3, check-timeout: 10}
axes:
  fault: [leader, partial-partition]
  rate: [50, 150]
repeats: 2
seed: 11
plots:
  - {x: rate, y: [p99, throughput], by: fault}
`

type e2e struct {
	t    *testing.T
	bin  string
	dir  string // working directory: the sweep file and the results root
	file string
	root string
}

func (e *e2e) dt(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Dir = e.dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *e2e) records(sweepDir string) []sweep.Record {
	recs, _, err := sweep.ReadState(filepath.Join(sweepDir, sweep.FileState))
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

func TestSweepEndToEnd(t *testing.T) {
	needHost(t)
	e := &e2e{t: t, bin: dtSweepBinary(t), dir: t.TempDir()}
	e.file = filepath.Join(e.dir, "e2e.yaml")
	e.root = filepath.Join(e.dir, "res")
	if err := os.WriteFile(e.file, []byte(e2eSweep), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := sweep.Parse(e.file)
	if err != nil {
		t.Fatal(err)
	}
	sweepDir := filepath.Join(e.root, "sweeps", "e2e")
	t0 := time.Now()

	// 1. Start the sweep in its own process group and SIGKILL the group in the middle of
	// its fourth run (the topology up, etcd running).
	cmd := exec.Command(e.bin, "sweep", e.file, "--results", e.root)
	cmd.Dir = e.dir
	var out1 bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out1, &out1
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(150 * time.Second)
	for {
		ends, starts := 0, 0
		for _, r := range e.records(sweepDir) {
			switch r.Event {
			case "end":
				ends++
			case "start":
				starts++
			}
		}
		if ends == 3 && starts == 4 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the sweep ended before it could be killed (%v):\n%s", err, out1.String())
		default:
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Fatalf("no fourth run after 150 s:\n%s", out1.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(4 * time.Second) // into the run
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	t.Logf("killed after %.0f s:\n%s", time.Since(t0).Seconds(), out1.String())
	session1 := map[string]string{} // run → status at the kill
	for _, r := range e.records(sweepDir) {
		switch r.Event {
		case "start":
			session1[r.Run] = sweep.StatusCrashed
		case "end":
			session1[r.Run] = r.Status
		}
	}
	var crashed string
	for run, st := range session1 {
		if st == sweep.StatusCrashed {
			crashed = run
		}
	}
	if crashed == "" || len(session1) != 4 {
		t.Fatalf("after the kill: %v", session1)
	}

	// 2. dt clean removes what the killed run left.
	cout, err := e.dt(time.Minute, "clean")
	t.Logf("dt clean: %s", cout)
	if err != nil || !strings.Contains(cout, "removed run") {
		t.Fatalf("dt clean: %v\n%s", err, cout)
	}

	// 3. The dry run shows the state; the same command completes only what is missing.
	dry, err := e.dt(time.Minute, "sweep", e.file, "--results", e.root, "--dry-run")
	if err != nil || !strings.Contains(dry, "(resuming)") || !strings.Contains(dry, crashed) || !strings.Contains(dry, "crashed") {
		t.Fatalf("dry run: %v\n%s", err, dry)
	}
	nrecs := len(e.records(sweepDir))
	out2, err := e.dt(5*time.Minute, "sweep", e.file, "--results", e.root)
	t.Logf("resumed (%.0f s so far):\n%s", time.Since(t0).Seconds(), out2)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	var rerun []string
	for _, r := range e.records(sweepDir)[nrecs:] {
		if r.Event == "start" {
			rerun = append(rerun, r.Run)
		}
	}
	var want []string
	for _, r := range s.Runs() {
		if session1[r.Name()] != sweep.StatusOK {
			want = append(want, r.Name())
		}
	}
	if !slices.Equal(rerun, want) {
		t.Errorf("the resumed sweep ran %v; missing were %v", rerun, want)
	}

	// 4. sweep.csv: one row per run, with its parameters and the derived seed, which is
	// also the seed the run recorded in its config.json.
	rows := sweep.ReadRows(t, filepath.Join(sweepDir, sweep.FileCSV))
	if len(rows) != 8 {
		t.Fatalf("sweep.csv has %d rows, want 8", len(rows))
	}
	for i, r := range s.Runs() {
		row := rows[i]
		wantFault, _ := r.Point.Get("fault")
		wantRate, _ := r.Point.Get("rate")
		if row["run"] != r.Name() || row["fault"] != wantFault || row["rate"] != sweep.FormatValue(wantRate) || row["repeat"] != strconv.Itoa(r.Repeat) {
			t.Errorf("row %d: run %s fault %s rate %s repeat %s; want %s %s", i, row["run"], row["fault"], row["rate"], row["repeat"], r.Name(), r.Point.Key())
		}
		if row["status"] != sweep.StatusOK {
			t.Errorf("%s: %s: %s", r.Name(), row["status"], row["error"])
		}
		seed := sweep.DeriveSeed(11, r.Point.Key(), r.Repeat)
		if row["seed"] != strconv.FormatInt(seed, 10) {
			t.Errorf("%s: seed %s, want %d", r.Name(), row["seed"], seed)
		}
		var cfg struct {
			Seed  int64   `json:"seed"`
			Fault string  `json:"fault"`
			Rate  float64 `json:"rate"`
		}
		b, err := os.ReadFile(filepath.Join(sweepDir, row["run_dir"], records.ConfigFile))
		if err != nil || json.Unmarshal(b, &cfg) != nil || cfg.Seed != seed || cfg.Fault != wantFault || cfg.Rate != wantRate {
			t.Errorf("%s: config.json %+v (%v), want seed %d", r.Name(), cfg, err, seed)
		}
		if row["windows.overall.throughput_ops_s"] == "" || row["ops.total"] == "0" {
			t.Errorf("%s: no figures: %v", r.Name(), row)
		}
	}

	// 5. Plots: one per figure, non-trivial; `dt sweep report` rebuilds them and the CSV.
	checkPlots := func() {
		for _, name := range []string{"windows-overall-latency_ms-p99_vs_rate_by_fault", "windows-overall-throughput_ops_s_vs_rate_by_fault"} {
			checkPNG(t, filepath.Join(sweepDir, sweep.DirPlots, name+".png"))
		}
	}
	checkPlots()
	os.RemoveAll(filepath.Join(sweepDir, sweep.DirPlots))
	os.Remove(filepath.Join(sweepDir, sweep.FileCSV))
	if rout, err := e.dt(time.Minute, "sweep", "report", sweepDir); err != nil || !strings.Contains(rout, "8 runs") {
		t.Fatalf("dt sweep report: %v\n%s", err, rout)
	}
	checkPlots()
	if rows := sweep.ReadRows(t, filepath.Join(sweepDir, sweep.FileCSV)); len(rows) != 8 {
		t.Errorf("rebuilt sweep.csv has %d rows", len(rows))
	}

	// 6. Same point, same derived seed, same fault targets: run p03-r1
	// (partial-partition, rate 50) again in a fresh directory. partial-partition cuts the
	// leader from a follower drawn with the run's seed, so the draw (which follower of
	// the sorted list) is the same; with the same leader the targets are identical.
	out3, err := e.dt(2*time.Minute, "sweep", e.file, "--results", e.root, "--fresh", "--only", "fault=partial-partition,rate=50,repeat=1")
	t.Logf("fresh single run:\n%s", out3)
	if err != nil {
		t.Fatalf("fresh --only: %v", err)
	}
	again := sweep.ReadRows(t, filepath.Join(sweepDir+"-2", sweep.FileCSV))
	if len(again) != 1 || again[0]["run"] != "p03-r1" || again[0]["seed"] != rows[4]["seed"] {
		t.Fatalf("fresh sweep rows: %v", again)
	}
	l1, f1 := partitionTargets(t, filepath.Join(sweepDir, rows[4]["run_dir"]))
	l2, f2 := partitionTargets(t, filepath.Join(sweepDir+"-2", again[0]["run_dir"]))
	t.Logf("p03-r1 (seed %s): leader %s cut from %s; again: leader %s cut from %s", rows[4]["seed"], l1, f1, l2, f2)
	servers := []string{"s1", "s2", "s3"}
	if drawn(servers, l1, f1) != drawn(servers, l2, f2) {
		t.Errorf("same seed, different draw: follower %s of leader %s vs follower %s of leader %s", f1, l1, f2, l2)
	}
	if l1 == l2 && f1 != f2 {
		t.Errorf("same seed and leader %s, different targets %s and %s", l1, f1, f2)
	}

	// 7. Nothing of any run is left on the host.
	if ents, _ := os.ReadDir(os.Getenv("DT_RUNTIME_DIR")); len(ents) > 0 {
		t.Errorf("runtime dir not empty: %v", ents)
	}
	for _, row := range append(rows, again...) {
		if ents, _ := filepath.Glob("/var/run/netns/dt-" + row["run_id"] + "-*"); len(ents) > 0 {
			t.Errorf("%s left %v", row["run"], ents)
		}
	}
	t.Logf("end to end in %.0f s", time.Since(t0).Seconds())
}

// partitionTargets returns the leader and the follower of the run's partial-partition.
func partitionTargets(t *testing.T, runDir string) (leader, follower string) {
	t.Helper()
	f, err := os.Open(filepath.Join(runDir, records.EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev records.Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == records.EventFaultStart && len(ev.Targets) == 2 {
			return ev.Targets[0], ev.Targets[1]
		}
	}
	t.Fatalf("%s: no partial-partition fault-start event", runDir)
	return "", ""
}

// drawn is the position of follower among the servers other than leader, sorted: what the
// seeded draw chose, whoever the leader was.
func drawn(servers []string, leader, follower string) int {
	var fs []string
	for _, s := range servers {
		if s != leader {
			fs = append(fs, s)
		}
	}
	sort.Strings(fs)
	return slices.Index(fs, follower)
}

// checkPNG: the plot decodes, has a real size and more than a blank frame's colours.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	img, err := png.Decode(f)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	colours := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[(r>>12)<<8|(g>>12)<<4|bl>>12] = true
		}
	}
	if st.Size() < 10_000 || b.Dx() < 600 || len(colours) < 8 {
		t.Errorf("%s: %d bytes, %v, %d colours: trivial", path, st.Size(), b, len(colours))
	}
}
