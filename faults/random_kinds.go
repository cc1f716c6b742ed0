package faults

import (
	"fmt"
	"slices"
	"time"
)

// The kinds random schedules draw (RandomKind) are the actions below; each method set
// says how a kind picks its targets and amounts.

// processUnsupported: a process kind needs three servers, so that one down leaves a
// majority.
func processUnsupported(kind string, o RandomOptions) string {
	if len(o.Servers) < 3 {
		return fmt.Sprintf("%s needs at least 3 servers: with %d, one down leaves no majority", kind, len(o.Servers))
	}
	return ""
}

// Draw takes down one free server (a restart is instantaneous).
func (a downAction) Draw(s *Step, d RandomDraw) {
	s.Targets = []string{d.Free[d.Rand.IntN(len(d.Free))]}
}

// Unsupported: a process kind needs three servers.
func (a downAction) Unsupported(o RandomOptions) string { return processUnsupported(a.name, o) }

// Drawn: kill, stop and pause (not shutdown).
func (a downAction) Drawn() bool { return a.random }

// Draw restarts one free server, at once.
func (a upAction) Draw(s *Step, d RandomDraw) {
	s.Targets = []string{d.Free[d.Rand.IntN(len(d.Free))]}
	s.For = 0
}

// Unsupported: see downAction.
func (a upAction) Unsupported(o RandomOptions) string { return processUnsupported(a.name, o) }

// Drawn: restart (not start or continue).
func (a upAction) Drawn() bool { return a.random }

// Draw cuts the servers into two random halves.
func (partitionAction) Draw(s *Step, d RandomDraw) {
	c := slices.Clone(d.Servers)
	d.Rand.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
	a, b := c[:len(c)/2], c[len(c)/2:]
	slices.Sort(a)
	slices.Sort(b)
	s.Groups = [][]string{a, b}
}

// Unsupported: two servers at least.
func (partitionAction) Unsupported(o RandomOptions) string {
	if len(o.Servers) < 2 {
		return "partition needs at least 2 servers"
	}
	return ""
}

// Drawn: yes.
func (partitionAction) Drawn() bool { return true }

// Draw isolates one server.
func (isolateAction) Draw(s *Step, d RandomDraw) { s.Targets = d.One() }

// Unsupported: always drawable.
func (isolateAction) Unsupported(RandomOptions) string { return "" }

// Drawn: yes.
func (isolateAction) Drawn() bool { return true }

// Draw slows (20–200 ms in steps of 10) or loses (5–50 % in steps of 5) one server's
// packets.
func (a impairAction) Draw(s *Step, d RandomDraw) {
	s.Targets = d.One()
	switch a.name {
	case "delay":
		s.Delay = Duration(time.Duration(2+d.Rand.IntN(19)) * 10 * time.Millisecond)
	case "loss":
		s.Loss = float64(5 * (1 + d.Rand.IntN(10)))
	}
}

// Unsupported: always drawable.
func (a impairAction) Unsupported(RandomOptions) string { return "" }

// Drawn: delay and loss.
func (a impairAction) Drawn() bool { return a.name == "delay" || a.name == "loss" }

// Draw blocks the servers' client port on one server.
func (dropPort) Draw(s *Step, d RandomDraw) {
	s.Targets = d.One()
	s.Port = d.Options.ClientPort
	s.Proto = "tcp"
}

// Unsupported: dropport needs the client port.
func (dropPort) Unsupported(o RandomOptions) string {
	if o.ClientPort == 0 {
		return "dropport needs the servers' client port"
	}
	return ""
}

// Drawn: yes.
func (dropPort) Drawn() bool { return true }
