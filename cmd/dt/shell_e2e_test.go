package main

// End-to-end tests of the debug prompt: `dt up etcd simple` with a real etcd cluster in
// real namespaces, driven once by a piped script and once at a real terminal (tmux).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

// newShellE2E skips unless the end-to-end tests can run and etcd is installed.
func newShellE2E(t *testing.T) *e2e {
	t.Helper()
	e := newE2E(t)
	if !haveAll("etcd") {
		t.Skip("needs etcd: apt-get install etcd-server")
	}
	return e
}

// section is one command of a scripted session with the lines it printed.
type section struct {
	cmd string
	out []string
}

// sections splits a session's output at the echoed prompts.
func sections(out string) []section {
	var secs []section
	for _, l := range strings.Split(out, "\n") {
		if c, ok := strings.CutPrefix(l, "dt> "); ok {
			secs = append(secs, section{cmd: c})
		} else if len(secs) > 0 {
			secs[len(secs)-1].out = append(secs[len(secs)-1].out, l)
		}
	}
	return secs
}

// memberRow is one line of `status`.
type memberRow struct {
	process, leader string
	term            int // -1 when the member did not answer
	health          string
}

var leaderLine = regexp.MustCompile(`^leader: (\S+)(?: \(term (\d+)\))?$`)

// parseStatus reads `status`: the leader ("none" when none is known) and every member.
func parseStatus(t *testing.T, lines []string) (string, map[string]memberRow) {
	t.Helper()
	leader := ""
	rows := map[string]memberRow{}
	header := false
	for _, l := range lines {
		if m := leaderLine.FindStringSubmatch(l); m != nil {
			leader = m[1]
			continue
		}
		f := strings.Fields(l)
		if len(f) >= 6 && f[0] == "member" && f[1] == "process" {
			header = true
			continue
		}
		if !header || len(f) < 6 || !strings.HasPrefix(f[0], "s") {
			continue
		}
		term, err := strconv.Atoi(f[3])
		if err != nil {
			term = -1
		}
		rows[f[0]] = memberRow{process: f[1], leader: f[2], term: term, health: strings.Join(f[5:], " ")}
	}
	if leader == "" || len(rows) == 0 {
		t.Fatalf("not a status output:\n%s", strings.Join(lines, "\n"))
	}
	return leader, rows
}

// TestShellScriptedSession pipes a session into `dt up etcd simple`: cut the leader from
// a follower, watch the follower's term rise alone, heal, kill the leader, watch a new
// one take over. A bad command in the middle is reported and does not stop the script,
// and the exit code says a command failed. Nothing of the run is left afterwards, and
// every command is in events.jsonl.
func TestShellScriptedSession(t *testing.T) {
	e := newShellE2E(t)
	resultsDir := t.TempDir()
	script := strings.Join([]string{
		"status",
		"kill s9",
		"partition leader follower",
		"sleep 5",
		"status",
		"heal",
		"wait healthy",
		"status",
		"kill leader",
		"wait leader",
		"status",
	}, "\n") + "\n"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := e.command(ctx, "up", "etcd", "simple", "--results", resultsDir)
	cmd.Stdin = strings.NewReader(script)
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	t.Logf("session:\n%s", out)
	m := runLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no run id in the output (err %v)", err)
	}
	id := m[1]
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want exit code 1 (one command failed)", err)
	}
	if !strings.Contains(out, "dt: commands failed: 1 of 11") {
		t.Errorf("the end of the session does not count the failed command")
	}

	secs := sections(out)
	var cmds []string
	for _, s := range secs {
		cmds = append(cmds, s.cmd)
	}
	if want := strings.Split(strings.TrimSpace(script), "\n"); strings.Join(cmds, "|") != strings.Join(want, "|") {
		t.Fatalf("echoed commands %q, want %q", cmds, want)
	}
	body := func(i int) string { return strings.Join(secs[i].out, "\n") }

	// 1. A healthy cluster: one leader, every member agrees.
	l0, rows := parseStatus(t, secs[0].out)
	for n, r := range rows {
		if r.process != "running" || r.health != "healthy" || r.leader != l0 || r.term != rows[l0].term {
			t.Errorf("first status: %s is %+v, want running, healthy, leader %s at term %d", n, r, l0, rows[l0].term)
		}
	}
	if len(rows) != 3 {
		t.Errorf("first status lists %d members, want 3", len(rows))
	}
	// 2. The bad command is reported and the script goes on.
	if !strings.Contains(body(1), `error: kill: unknown node "s9"`) {
		t.Errorf("kill s9 did not report an error:\n%s", body(1))
	}
	// 3. The partition names the leader and a follower.
	pm := regexp.MustCompile(`partitioned (s\d) <-> (s\d)`).FindStringSubmatch(body(2))
	if pm == nil {
		t.Fatalf("partition leader follower printed:\n%s", body(2))
	}
	leader, follower := pm[1], pm[2]
	if leader != l0 || follower == leader {
		t.Errorf("partition cut %s from %s; the leader was %s", leader, follower, l0)
	}
	// 4. Cut off, the follower campaigns alone: its term rises past the leader's, which
	// keeps leading with the third member (etcd's check-quorum lease ignores the votes).
	l1, rows := parseStatus(t, secs[4].out)
	if rows[follower].term <= rows[leader].term {
		t.Errorf("after 5 s cut off, %s is at term %d, not above the leader %s's %d:\n%s",
			follower, rows[follower].term, leader, rows[leader].term, body(4))
	}
	if rows[follower].health == "healthy" {
		t.Errorf("the cut follower %s reports healthy:\n%s", follower, body(4))
	}
	if l1 != leader {
		t.Errorf("while cut from one follower the leader changed from %s to %s:\n%s", leader, l1, body(4))
	}
	cutTerm := rows[follower].term
	// 5. Healed: one leader again, every member at the same term, at least the one the
	// follower reached alone.
	if !strings.Contains(body(5), "healed all partitions") {
		t.Errorf("heal printed:\n%s", body(5))
	}
	l2, rows := parseStatus(t, secs[7].out)
	if l2 == "none" {
		t.Fatalf("no leader after heal and wait healthy:\n%s", body(7))
	}
	for n, r := range rows {
		if r.health != "healthy" || r.term != rows[l2].term || r.leader != l2 {
			t.Errorf("after heal: %s is %+v, want healthy at the leader %s's term %d", n, r, l2, rows[l2].term)
		}
	}
	if rows[l2].term < cutTerm {
		t.Errorf("after heal the term is %d, below the %d the cut follower reached", rows[l2].term, cutTerm)
	}
	// 6. The leader killed: it shows killed and unreachable; another leads.
	km := regexp.MustCompile(`killed (s\d) \(was the leader\)`).FindStringSubmatch(body(8))
	if km == nil || km[1] != l2 {
		t.Fatalf("kill leader printed (leader was %s):\n%s", l2, body(8))
	}
	killed := km[1]
	l3, rows := parseStatus(t, secs[10].out)
	if l3 == "none" || l3 == killed {
		t.Errorf("after killing %s the leader is %s:\n%s", killed, l3, body(10))
	}
	if r := rows[killed]; r.process != "killed" || !strings.HasPrefix(r.health, "error") || r.term != -1 {
		t.Errorf("the killed member %s shows %+v, want process killed and an error", killed, r)
	}
	for n, r := range rows {
		if n != killed && (r.health != "healthy" || r.leader != l3) {
			t.Errorf("after the kill: %s is %+v, want healthy following %s", n, r, l3)
		}
	}

	// Nothing of the run is left.
	if !strings.Contains(out, "tearing down "+id) {
		t.Errorf("no teardown reported")
	}
	e.assertGone(id, "the end of the script")
	if out := e.mustDT("ls"); !strings.Contains(out, "no topologies") {
		t.Errorf("dt ls after the session:\n%s", out)
	}

	// The session is in the run's events: every command, the partition as a fault
	// window, the kill.
	evs := readEvents(t, resultsDir)
	var typed []string
	faultsSeen := map[string]string{}
	for _, ev := range evs {
		switch ev.Type {
		case records.EventCommand:
			typed = append(typed, ev.Detail)
		case records.EventFaultStart, records.EventFaultEnd:
			faultsSeen[ev.Type+" "+ev.Fault] = ev.Action
		}
	}
	if strings.Join(typed, "|") != strings.Join(cmds, "|") {
		t.Errorf("command events %q, want %q", typed, cmds)
	}
	cut := fmt.Sprintf("partition %s <-> %s", leader, follower)
	for k, action := range map[string]string{
		"fault-start " + cut: "partition", "fault-end " + cut: "heal", "fault-start kill " + killed: "kill",
	} {
		if faultsSeen[k] != action {
			t.Errorf("events.jsonl: no %q with action %q (have %v)", k, action, faultsSeen)
		}
	}
}

// readEvents reads the events.jsonl of the only run under root (through its latest link).
func readEvents(t *testing.T, root string) []records.Event {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(root, "*", "latest", records.EventsFile))
	if len(paths) != 1 {
		t.Fatalf("want one events.jsonl under %s, have %v", root, paths)
	}
	f, err := os.Open(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []records.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev records.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%s: %v", paths[0], err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// tmux drives a private tmux server (its own socket) for one test.
type tmux struct {
	t    *testing.T
	sock string
}

func (x *tmux) run(args ...string) string {
	x.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", x.sock}, args...)...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is the pane with its history, wrapped lines joined, without the blank lines
// below the cursor: what is there now is a prefix of what will be there later.
func (x *tmux) screen() string {
	out, err := exec.Command("tmux", "-S", x.sock, "capture-pane", "-p", "-J", "-S", "-5000", "-t", "dt").CombinedOutput()
	if err != nil {
		return ""
	}
	return strings.TrimRight(string(out), "\n")
}

// waitFor polls the pane until re matches what appeared after the first from bytes.
func (x *tmux) waitFor(from int, re *regexp.Regexp, d time.Duration) []string {
	x.t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := x.screen()
		if len(s) > from {
			if m := re.FindStringSubmatch(s[from:]); m != nil {
				return m
			}
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("the pane never showed %q within %s after %q:\n%s", re, d, s[min(from, len(s)):], s)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// atPrompt waits until the pane ends with an empty prompt and returns where what is
// typed next will appear.
func (x *tmux) atPrompt() int {
	x.t.Helper()
	x.waitFor(0, regexp.MustCompile(`(?s)dt>\s*$`), 60*time.Second)
	return len(x.screen())
}

// TestShellInteractiveTmux opens the prompt in a real terminal (a tmux pane), types
// `status` and a Tab-completed `pingall`, checks what they print, checks Ctrl-C only
// drops the line, and leaves with `exit`, which tears everything down.
func TestShellInteractiveTmux(t *testing.T) {
	e := newShellE2E(t)
	if !haveAll("tmux") {
		t.Skip("needs tmux: apt-get install tmux")
	}
	x := &tmux{t: t, sock: filepath.Join(e.rt, "tmux.sock")}
	resultsDir := t.TempDir()
	shellCmd := fmt.Sprintf("env DT_RUNTIME_DIR=%s %s up etcd simple --results %s; echo DT-EXIT=$?; sleep 120",
		e.rt, dtBin, resultsDir)
	x.run("new-session", "-d", "-s", "dt", "-x", "160", "-y", "50", shellCmd)
	t.Cleanup(func() {
		_ = exec.Command("tmux", "-S", x.sock, "kill-server").Run()
	})

	m := x.waitFor(0, regexp.MustCompile(`topology simple up: run ([0-9a-f]+)`), 2*time.Minute)
	id := m[1]
	x.waitFor(0, regexp.MustCompile(`(?m)^dt>\s*$`), 2*time.Minute)

	from := x.atPrompt()
	x.run("send-keys", "-t", "dt", "status", "Enter")
	status := regexp.MustCompile(`(?s)leader: (s\d) \(term (\d+)\)\s*\n\s*member\s+process.*?\n(.*?)load:`)
	m = x.waitFor(from, status, 30*time.Second)
	leader := m[1]
	healthy := 0
	for _, l := range strings.Split(m[3], "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && f[1] == "running" && f[2] == leader && f[5] == "healthy" {
			healthy++
		}
	}
	if healthy != 3 {
		t.Errorf("status: want 3 running members following %s, healthy; got:\n%s", leader, m[0])
	}

	// Tab completes "pin" to "pingall".
	from = x.atPrompt()
	x.run("send-keys", "-t", "dt", "pin", "Tab")
	x.waitFor(from, regexp.MustCompile(`^\s*pingall\s*$`), 10*time.Second) // from is just after the prompt
	x.run("send-keys", "-t", "dt", "Enter")
	x.waitFor(from, regexp.MustCompile(`\*\*\* Results: 0% dropped \(12/12 received\)`), 30*time.Second)
	for _, n := range []string{"s1", "s2", "s3", "c1"} {
		row := regexp.MustCompile(`(?m)^` + n + ` ->((?: +(?:s\d|c\d|X))+) *$`)
		rm := row.FindStringSubmatch(x.screen()[from:])
		if rm == nil || strings.Contains(rm[1], "X") || len(strings.Fields(rm[1])) != 3 {
			t.Errorf("pingall row of %s: %q, want the three other nodes", n, rm)
		}
	}

	// Ctrl-C drops the line being typed and leaves the session up.
	from = x.atPrompt()
	x.run("send-keys", "-t", "dt", "kill lead", "C-c")
	x.run("send-keys", "-t", "dt", "leader", "Enter")
	x.waitFor(from, regexp.MustCompile(`(?m)^s\d \(term \d+\)`), 15*time.Second)
	if strings.Contains(x.screen()[from:], "killed") {
		t.Errorf("Ctrl-C did not drop the line: a member was killed:\n%s", x.screen()[from:])
	}

	x.atPrompt()
	x.run("send-keys", "-t", "dt", "exit", "Enter")
	defer func() { t.Logf("pane:\n%s", x.screen()) }()
	x.waitFor(from, regexp.MustCompile(`DT-EXIT=0`), 90*time.Second)
	if !strings.Contains(x.screen(), "tearing down "+id) {
		t.Errorf("exit did not report the teardown of %s", id)
	}
	e.assertGone(id, "exit at the prompt")
	evs := readEvents(t, resultsDir)
	var typed []string
	for _, ev := range evs {
		if ev.Type == records.EventCommand {
			typed = append(typed, ev.Detail)
		}
	}
	if want := []string{"status", "pingall", "leader", "exit"}; strings.Join(typed, "|") != strings.Join(want, "|") {
		t.Errorf("command events %q, want %q", typed, want)
	}
}
