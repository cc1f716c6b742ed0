// Package ovs runs a private Open vSwitch instance per topology (its own ovsdb-server and
// ovs-vswitchd, with db, sockets, pid files and logs under one directory), builds bridges
// and ports through OVSDB (libovsdb) and installs OpenFlow rules tagged with cookies.
// It never touches the host's own OVS. It does not decide what to partition.
package ovs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dtlab/dt/internal/nsrun"
)

// Datapath types.
const (
	DatapathAuto   = "auto"
	DatapathSystem = "system" // kernel module
	DatapathNetdev = "netdev" // userspace, forwarded by ovs-vswitchd itself
)

// ErrMissing is returned when an Open vSwitch program is not installed.
var ErrMissing = errors.New("open vswitch is not installed (apt-get install openvswitch-switch)")

// SchemaPath is where Debian installs the vswitch schema.
var SchemaPath = "/usr/share/openvswitch/vswitch.ovsschema"

// Options configure a private instance.
type Options struct {
	Dir      string // db, sockets, pid files and logs go here; must be short (unix socket paths ≤ 107 bytes)
	RunID    string // written to external_ids and to the daemons' environment
	Datapath string // auto | system | netdev
	// Netns names the network namespace ovs-vswitchd runs in ("" = the caller's). dt gives
	// every topology its own: the userspace datapath creates a tap device named
	// "ovs-netdev" (and one per bridge), which a second vswitchd in the same namespace
	// cannot create — so two topologies in the host namespace would break each other.
	Netns string
}

// Instance is a running private OVS: one ovsdb-server and one ovs-vswitchd.
type Instance struct {
	Dir      string
	RunID    string
	Datapath string // resolved: system or netdev
	Netns    string // where ovs-vswitchd runs
}

// KernelModuleLoaded reports whether the openvswitch kernel module is present.
func KernelModuleLoaded() bool {
	_, err := os.Stat("/sys/module/openvswitch")
	return err == nil
}

// hostVswitchdRunning reports whether an ovs-vswitchd other than ours already runs; two
// vswitchd instances cannot share the kernel datapath.
func hostVswitchdRunning(ourDir string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if filepath.Base(args[0]) == "ovs-vswitchd" && !strings.Contains(string(cmd), ourDir) {
			return true
		}
	}
	return false
}

// ResolveDatapath turns auto into system or netdev and validates explicit choices.
func ResolveDatapath(want, dir string) (string, error) {
	switch want {
	case "", DatapathAuto:
		if KernelModuleLoaded() && !hostVswitchdRunning(dir) {
			return DatapathSystem, nil
		}
		return DatapathNetdev, nil
	case DatapathNetdev:
		return DatapathNetdev, nil
	case DatapathSystem:
		if !KernelModuleLoaded() {
			return "", fmt.Errorf("datapath %q needs the openvswitch kernel module, which is not loaded; use --datapath netdev (or auto)", want)
		}
		return DatapathSystem, nil
	}
	return "", fmt.Errorf("unknown datapath %q: valid are auto, system, netdev", want)
}

// CheckInstalled verifies the OVS programs dt needs are on PATH.
func CheckInstalled() error {
	for _, p := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-ofctl", "ovs-appctl"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s not found: %w", p, ErrMissing)
		}
	}
	if _, err := os.Stat(SchemaPath); err != nil {
		return fmt.Errorf("schema %s: %w", SchemaPath, ErrMissing)
	}
	return nil
}

// Paths of the instance's files.
func (i *Instance) dbFile() string          { return filepath.Join(i.Dir, "conf.db") }
func (i *Instance) DBSocket() string        { return filepath.Join(i.Dir, "db.sock") }
func (i *Instance) pidFile(d string) string { return filepath.Join(i.Dir, d+".pid") }
func (i *Instance) ctlFile(d string) string { return filepath.Join(i.Dir, d+".ctl") }

// MgmtSocket is the OpenFlow management socket ovs-vswitchd opens for bridge.
func (i *Instance) MgmtSocket(bridge string) string {
	return filepath.Join(i.Dir, bridge+".mgmt")
}

// env points every OVS program at the private directory (OVS_RUNDIR decides where
// ovs-vswitchd puts bridge management sockets) and tags it with the run id.
func (i *Instance) env() []string {
	return append(os.Environ(),
		"OVS_RUNDIR="+i.Dir, "OVS_LOGDIR="+i.Dir, "OVS_DBDIR="+i.Dir, "DT_RUN_ID="+i.RunID)
}

// Start creates a fresh database from the installed schema and starts ovsdb-server and
// ovs-vswitchd on it. On error, whatever was started is stopped again.
func Start(ctx context.Context, o Options) (inst *Instance, err error) {
	if err := CheckInstalled(); err != nil {
		return nil, err
	}
	dp, err := ResolveDatapath(o.Datapath, o.Dir)
	if err != nil {
		return nil, err
	}
	if len(o.Dir)+40 > 107 {
		return nil, fmt.Errorf("ovs dir %q is too long for unix socket paths", o.Dir)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create ovs dir: %w", err)
	}
	inst = &Instance{Dir: o.Dir, RunID: o.RunID, Datapath: dp, Netns: o.Netns}
	defer func() {
		if err != nil {
			_ = inst.Stop(context.Background())
		}
	}()
	if err := inst.run(ctx, "ovsdb-tool", "create", inst.dbFile(), SchemaPath); err != nil {
		return nil, err
	}
	if err := inst.run(ctx, "ovsdb-server", inst.dbFile(),
		"--remote=punix:"+inst.DBSocket(),
		"--pidfile="+inst.pidFile("ovsdb-server"),
		"--unixctl="+inst.ctlFile("ovsdb-server"),
		"--log-file="+filepath.Join(inst.Dir, "ovsdb-server.log"),
		"--detach", "--no-chdir"); err != nil {
		return nil, err
	}
	if err := initRoot(ctx, inst); err != nil {
		return nil, err
	}
	if err := inst.runIn(ctx, inst.Netns, "ovs-vswitchd", "unix:"+inst.DBSocket(),
		"--pidfile="+inst.pidFile("ovs-vswitchd"),
		"--unixctl="+inst.ctlFile("ovs-vswitchd"),
		"--log-file="+filepath.Join(inst.Dir, "ovs-vswitchd.log"),
		"--detach", "--no-chdir"); err != nil {
		return nil, err
	}
	return inst, nil
}

// Attach returns a handle on an instance started earlier (by another dt process).
func Attach(dir, runID, datapath string) *Instance {
	return &Instance{Dir: dir, RunID: runID, Datapath: datapath}
}

func (i *Instance) run(ctx context.Context, name string, args ...string) error {
	return i.runIn(ctx, "", name, args...)
}

// runIn runs a program to completion inside the named network namespace ("" = ours).
func (i *Instance) runIn(ctx context.Context, netnsName, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = i.env()
	cmd.Dir = i.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := startIn(netnsName, cmd); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// startIn starts cmd inside the named namespace ("" = ours); the child inherits it.
func startIn(netnsName string, cmd *exec.Cmd) error {
	if netnsName == "" {
		return cmd.Start()
	}
	return nsrun.Start(netnsName, cmd)
}

// Pids returns the pids of the instance's daemons that are still alive and really ours
// (their command line names our directory, so a recycled pid is never signalled).
func (i *Instance) Pids() map[string]int {
	out := map[string]int{}
	for _, d := range []string{"ovs-vswitchd", "ovsdb-server"} {
		b, err := os.ReadFile(i.pidFile(d))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmd), i.Dir) {
			continue
		}
		out[d] = pid
	}
	return out
}

// Stop ends both daemons: a clean exit through their control sockets first (vswitchd
// then removes its datapath and tap devices), SIGKILL for whatever is left.
func (i *Instance) Stop(ctx context.Context) error {
	pids := i.Pids()
	if _, ok := pids["ovs-vswitchd"]; ok {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = i.run(cctx, "ovs-appctl", "-t", i.ctlFile("ovs-vswitchd"), "exit", "--cleanup")
		cancel()
	}
	if _, ok := pids["ovsdb-server"]; ok {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = i.run(cctx, "ovs-appctl", "-t", i.ctlFile("ovsdb-server"), "exit")
		cancel()
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := i.Pids()
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
			if left := i.Pids(); len(left) > 0 {
				return fmt.Errorf("ovs daemons still alive after SIGKILL: %v", left)
			}
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LogTail returns the last n lines of a daemon's log ("ovs-vswitchd" or "ovsdb-server").
func (i *Instance) LogTail(daemon string, n int) string {
	b, err := os.ReadFile(filepath.Join(i.Dir, daemon+".log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return daemon + ".log:\n  " + strings.Join(lines, "\n  ")
}

// Kill SIGKILLs both daemons and waits until they are gone. Teardown uses it once the
// switch has no ports left: a clean exit costs ~15 ms per port and saves nothing, as the
// datapath goes with the switch namespace.
func (i *Instance) Kill() error {
	for _, pid := range i.Pids() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if len(i.Pids()) == 0 {
			return nil
		}
	}
	return fmt.Errorf("ovs daemons still alive after SIGKILL: %v", i.Pids())
}
