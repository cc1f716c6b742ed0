package shell

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/topology"
)

// cmdDo fires any registered step action now: `do ACTION [TARGET...] [FIELD=VALUE...]`,
// the fields of a scenario step (`do delay s1 delay=100ms duration=5s`,
// `do partition groups=[[s1],[s2,s3]] one-way=true`). It is the same step a scenario file
// would run, validated the same way.
func (s *Shell) cmdDo(ctx context.Context, args []string) error {
	if len(args) == 0 {
		s.printf("Actions (`do ACTION [TARGET...] [FIELD=VALUE...]` fires one now):\n%s", faults.ActionHelp())
		return nil
	}
	st, err := parseStep(args)
	if err != nil {
		return fmt.Errorf("do: %w", err)
	}
	s.mu.Lock()
	s.nfault++
	n := s.nfault
	s.mu.Unlock()
	label := st.ID
	if label == "" {
		label = fmt.Sprintf("%s#%d", st.Action, n)
	}
	if err := s.sess.Fire(ctx, label, st); err != nil {
		return fmt.Errorf("do: %w", err)
	}
	s.printf("%s: %s done", label, st.Action)
	if st.For > 0 {
		s.printf(", undone in %v", st.For)
	}
	s.printf("\n")
	return nil
}

// parseStep reads `ACTION [TARGET...] [FIELD=VALUE...]` into a step, each VALUE read as
// YAML the way a scenario file's field is, unknown fields refused.
func parseStep(args []string) (faults.Step, error) {
	var st faults.Step
	a, err := faults.LookupAction(args[0])
	if err != nil {
		return st, err
	}
	var doc bytes.Buffer
	fmt.Fprintf(&doc, "action: %q\n", a.Name())
	var targets []string
	for _, w := range args[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			targets = append(targets, topology.SplitGroup(w)...)
			continue
		}
		switch k {
		case "at", "after":
			return st, fmt.Errorf("%s: a step at the prompt fires now (use duration, or sleep first)", k)
		case "action", "targets":
			return st, fmt.Errorf("%s: give the action first and the targets as words, not %s=", k, k)
		}
		fmt.Fprintf(&doc, "%s: %s\n", k, v)
	}
	if len(targets) > 0 {
		fmt.Fprintf(&doc, "targets: [%s]\n", strings.Join(targets, ", "))
	}
	dec := yaml.NewDecoder(&doc)
	dec.KnownFields(true)
	if err := dec.Decode(&st); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return st, fmt.Errorf("%s (fields of %s: %s; and id, probe)", strings.Join(te.Errors, "; "), a.Name(), strings.Join(faults.AcceptedFields(a), ", "))
		}
		return st, err
	}
	return st, nil
}

// completeDo completes an action name, then node names and the action's fields.
func completeDo(s *Shell, before []string, _ string) []string {
	if len(before) == 0 {
		return faults.ActionNames()
	}
	a, err := faults.LookupAction(before[0])
	if err != nil {
		return nil
	}
	var out []string
	if a.Form().Targets != faults.TargetsNone {
		out = s.nodeNames(false)
	}
	for _, f := range append(faults.AcceptedFields(a), "id") {
		if !slices.ContainsFunc(before, func(w string) bool { return strings.HasPrefix(w, f+"=") }) {
			out = append(out, f+"=")
		}
	}
	return out
}
