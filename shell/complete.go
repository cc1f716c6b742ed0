package shell

import (
	"slices"
	"strings"

	"github.com/dtlab/dt/faults"
)

// Complete returns where the word being typed at pos starts and every word that could
// replace it: command names and node names first, then what each command takes (nodes,
// leader and follower where a system runs, its flags, fault names...).
func (s *Shell) Complete(line string, pos int) (start int, candidates []string) {
	if pos > len(line) {
		pos = len(line)
	}
	start = strings.LastIndexAny(line[:pos], " \t") + 1
	word := line[start:pos]
	before, err := Split(line[:start])
	if err != nil {
		return start, nil
	}
	var all []string
	switch {
	case len(before) == 0:
		all = append(s.commandNames(), s.live.Spec.NodeNames()...)
	default:
		if c, ok := s.find(before[0]); ok {
			if c.complete != nil && (!c.system || s.cluster != nil) {
				all = c.complete(s, before[1:], word)
			}
		} else if _, err := s.live.Spec.Node(before[0]); err == nil && len(before) > 1 {
			all = s.live.Spec.NodeNames() // arguments naming a node become its address
		}
	}
	// A group "s1,s": complete the last member.
	prefix := ""
	if i := strings.LastIndexByte(word, ','); i >= 0 {
		prefix, word = word[:i+1], word[i+1:]
	}
	for _, c := range all {
		if strings.HasPrefix(c, word) && !slices.Contains(candidates, prefix+c) {
			candidates = append(candidates, prefix+c)
		}
	}
	return start, candidates
}

// nodeNames are the names a node argument takes: nodes, and leader and follower where a
// system runs.
func (s *Shell) nodeNames(serversOnly bool) []string {
	var out []string
	if serversOnly {
		out = s.servers()
	} else {
		out = s.live.Spec.NodeNames()
	}
	if s.cluster != nil {
		out = append(out, nameLeader, nameFollower)
	}
	return out
}

// positional counts the words that are not flags (a flag's value is not counted when the
// flag takes one: the callers' flags that take values are listed in valued).
func positional(words []string, valued ...string) int {
	n := 0
	for i := 0; i < len(words); i++ {
		w := words[i]
		if strings.HasPrefix(w, "-") {
			if slices.Contains(valued, w) {
				i++
			}
			continue
		}
		n++
	}
	return n
}

// flagsOnly completes a command that takes only these flags.
func flagsOnly(fl ...string) func(*Shell, []string, string) []string {
	return func(*Shell, []string, string) []string { return fl }
}

// nodesThenFlags completes n node arguments, then the flags.
func nodesThenFlags(n int, fl ...string) func(*Shell, []string, string) []string {
	return func(s *Shell, before []string, word string) []string {
		if strings.HasPrefix(word, "-") || positional(before, "--delay", "--jitter", "--loss", "--rate", "--timeout") >= n {
			return fl
		}
		if len(before) > 0 && slices.Contains([]string{"--delay", "--jitter", "--loss", "--rate"}, before[len(before)-1]) {
			return nil // a value
		}
		return s.nodeNames(false)
	}
}

// serversOnly completes servers (and leader, follower) for the process commands.
func serversOnly(s *Shell, _ []string, _ string) []string { return s.nodeNames(true) }

// completeFault completes a fault name or stop, then the flags, then a kill target.
func completeFault(s *Shell, before []string, word string) []string {
	if len(before) == 0 {
		return append(faults.Names(), "stop")
	}
	switch before[len(before)-1] {
	case "--kill-target":
		return []string{"leader", "follower", "any"}
	case "--duration", "--mtbf", "--kill-n":
		return nil
	}
	if before[0] == "stop" {
		return nil
	}
	return []string{"--duration", "--mtbf", "--kill-n", "--kill-target", "--wait"}
}
