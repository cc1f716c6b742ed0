package experiment

// The disk layer of a run (--disk fuse): each member's data dir is a FUSE passthrough
// mounted by its node's agent before the member starts, its files in a store beside it
// (<data dir>.disk) under the runtime dir. faultEnv offers faults.Disk only then.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dtlab/dt/agent"
	"github.com/dtlab/dt/disk"
	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/systems"
)

var _ faults.Disk = (*faultEnv)(nil)

// Capabilities: the disk layer only when the run has one; probes as the network's.
func (e *faultEnv) Capabilities() []faults.Capability {
	caps := e.netEnv.Capabilities()
	if e.c.Cfg.Disk != DiskFUSE {
		caps = slices.DeleteFunc(slices.Clone(caps), func(c faults.Capability) bool { return c == faults.CapDisk })
	}
	return caps
}

// checkDiskHost refuses --disk fuse where FUSE cannot work (before anything exists).
func checkDiskHost(cfg Config) error {
	if cfg.Disk != DiskFUSE {
		return nil
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("--disk fuse needs /dev/fuse (the fuse kernel module): %w", err)
	}
	return nil
}

// diskStore is where the layer over a data dir keeps its files: beside it.
func diskStore(dataDir string) string { return filepath.Clean(dataDir) + ".disk" }

// mountDisks mounts the disk layer over every member's data dir, through its agent.
func (c *Cluster) mountDisks(ctx context.Context) error {
	if c.Cfg.Disk != DiskFUSE {
		return nil
	}
	for i, m := range c.Members.Members {
		d := c.Sys.MemberCommand(c.Members, i, false).DataDir
		if d == "" {
			return fmt.Errorf("--disk fuse: %s keeps no data dir", c.Cfg.System)
		}
		if _, err := c.Agents[m.Name].Client().MountDisk(ctx, d, diskStore(d)); err != nil {
			return fmt.Errorf("mount the disk layer over %s's data dir: %w", m.Name, err)
		}
	}
	c.Record(records.Event{Type: records.EventFaultAction, Action: "disk", Detail: fmt.Sprintf("the disk layer serves every member's data dir (%s)", disk.FSType)})
	return nil
}

// DiskRule puts r in force on node's layer and watches node's member while it is:
// a member that exits meanwhile is recorded, with the last error its log holds.
func (e *faultEnv) DiskRule(ctx context.Context, node, owner string, r disk.Rule, probes int) (faults.DiskProbes, faults.Undo, error) {
	d, err := e.c.dataDir(node)
	if err != nil {
		return faults.DiskProbes{}, nil, err
	}
	cl := e.c.Agents[node].Client()
	res, err := cl.AddDiskRule(ctx, d, r, probes)
	if err != nil {
		return faults.DiskProbes{}, nil, err
	}
	stop := e.watchMember(node, owner, r.String())
	undo := func(ctx context.Context) error {
		_, err := cl.ClearDiskRule(ctx, d, r.ID)
		stop()
		if errors.Is(err, agent.ErrNotFound) {
			return nil // the layer was remounted or cleaned: the rule is gone already
		}
		return err
	}
	return faults.DiskProbes{Baseline: res.Baseline, After: res.Probes}, undo, nil
}

// watchMember records, under owner, node's member ending on its own (not by a fault's
// kill or stop) until the returned stop is called: a member that exits on a failed
// fsync does so within milliseconds of the failure.
func (e *faultEnv) watchMember(node, owner, what string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		cl := e.c.Agents[node].Client()
		var last agent.ProcStatus
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			st, err := cl.Status(ctx, procName)
			if err == nil {
				if st.State == agent.StateExited && (last.Alive() || st.Pid != last.Pid) && last.Pid != 0 {
					e.Record(records.Event{Type: records.EventFaultAction, Fault: owner, Action: records.ActionMemberExit, Targets: []string{node},
						Detail: fmt.Sprintf("%s's member exited with code %d while %s: %s", node, st.ExitCode, what, e.c.lastLogError(node))})
				}
				last = st
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
}

// PowerLoss discards what node's member did not fsync; the canary written through the
// mount just before says whether the layer did.
func (e *faultEnv) PowerLoss(ctx context.Context, node, model string) (string, error) {
	d, err := e.c.dataDir(node)
	if err != nil {
		return "", err
	}
	res, err := e.c.Agents[node].Client().PowerLoss(ctx, d, model)
	if err != nil {
		return "", err
	}
	detail := res.Report.String() + "; " + res.Canary.Detail
	if !res.Canary.Kept || !res.Canary.Dropped {
		return detail, fmt.Errorf("power loss on %s not verified: %s", node, res.Canary.Detail)
	}
	return detail, nil
}

// Corrupt damages a file of node's data dir.
func (e *faultEnv) Corrupt(ctx context.Context, node string, co disk.Corruption) (string, error) {
	d, err := e.c.dataDir(node)
	if err != nil {
		return "", err
	}
	rep, err := e.c.Agents[node].Client().CorruptDisk(ctx, d, co)
	if err != nil {
		return "", err
	}
	return rep.String(), nil
}

// DiskFiles are the system's names for its files.
func (e *faultEnv) DiskFiles() map[string]string {
	if f, ok := e.c.Sys.(systems.DiskFiler); ok {
		return f.DiskFiles()
	}
	return nil
}

// Outcome watches node's member after its restart: back (running and healthy), or not
// (its process ended: the last error its log holds says why; or never healthy).
func (e *faultEnv) Outcome(ctx context.Context, node string, within time.Duration) (string, bool) {
	began := time.Now()
	cl := e.c.Agents[node].Client()
	healthySince := time.Time{}
	lastErr := ""
	for {
		st, err := cl.Status(ctx, procName)
		if err == nil && !st.Alive() {
			return fmt.Sprintf("%s did not come back: its member exited with code %d %.1f s after the restart: %s",
				node, st.ExitCode, st.ExitedAt.Sub(st.StartedAt).Seconds(), e.c.lastLogError(node)), false
		}
		for _, ms := range e.c.Monitor.Statuses() {
			if ms.Member != node {
				continue
			}
			// Healthy at a status read after the restart, twice in a row (a member that
			// answers from its old state for a moment before it fails is not back).
			if ms.Healthy {
				if healthySince.IsZero() {
					healthySince = time.Now()
				} else if time.Since(healthySince) > 2*PollInterval {
					return fmt.Sprintf("%s is back: running and healthy %.1f s after the restart (leader %s)",
						node, time.Since(began).Seconds(), e.c.Monitor.MemberName(ms.LeaderID)), true
				}
			} else {
				healthySince, lastErr = time.Time{}, ms.Error
			}
		}
		if time.Since(began) > within {
			return fmt.Sprintf("%s runs but is not healthy %v after the restart: %s", node, within, lastErr), false
		}
		select {
		case <-ctx.Done():
			return fmt.Sprintf("%s: the run ended first", node), false
		case <-time.After(PollInterval):
		}
	}
}

// lastLogError is the last line of node's member log that reports an error: for a
// JSON log (etcd's zap) the last fatal, panic or error entry's message and error; for
// a text log (ZooKeeper's) the last "Caused by:", else exception, else ERROR line;
// else its last line.
func (c *Cluster) lastLogError(node string) string {
	f, err := os.Open(filepath.Join(c.RunDir, records.LogsDir, node+".log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	const window = 256 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		_, _ = f.Seek(-window, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	var lastLine, lastErr string
	var cause, exception, errLine string // a text log's: the last "Caused by:", "...Exception: ...", ERROR line
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		lastLine = line
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil {
			switch {
			case strings.HasPrefix(line, "Caused by:"):
				cause = line
			case strings.Contains(line, "Exception: "):
				exception = line
			case strings.Contains(line, " ERROR ") || strings.Contains(line, " FATAL "):
				errLine = line
			}
			continue
		}
		switch entry.Level {
		case "fatal", "panic", "dpanic", "error":
			lastErr = entry.Level + ": " + entry.Msg
			if entry.Error != "" {
				lastErr += ": " + entry.Error
			}
		}
	}
	cut := func(l string) string {
		if len(l) > 300 {
			return l[:300] + "…"
		}
		return l
	}
	switch {
	case lastErr != "":
		return lastErr
	case cause != "":
		return cut(cause)
	case exception != "":
		return cut(exception)
	case errLine != "":
		return cut(errLine)
	case lastLine != "":
		if len(lastLine) > 300 {
			lastLine = lastLine[:300] + "…"
		}
		return "last log line: " + lastLine
	}
	return "(empty log)"
}
