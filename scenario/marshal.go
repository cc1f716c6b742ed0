package scenario

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/dtlab/dt/topology"
	"gopkg.in/yaml.v3"
)

// Marshal writes s in the scenario format, for a run's directory: Parse reads back the
// same scenario, so a run can be replayed from it. Empty fields are left out, and a
// topology file's path is made absolute (the result is read from another directory).
func (s *Scenario) Marshal() ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	put := func(m *yaml.Node, key string, v *yaml.Node) { m.Content = append(m.Content, str(key), v) }
	if s.Name != "" {
		put(root, "name", str(s.Name))
	}
	put(root, "system", str(s.System))
	topo := s.Topology
	if topology.IsFile(topo) {
		abs, err := filepath.Abs(topo)
		if err != nil {
			return nil, fmt.Errorf("scenario %s: topology: %w", s.Name, err)
		}
		topo = abs
	}
	put(root, "topology", str(topo))
	if s.Workload != "" {
		put(root, "workload", str(s.Workload))
	}
	put(root, "duration", plain(s.Duration.String()))
	if s.Seed != nil {
		put(root, "seed", plain(strconv.FormatInt(*s.Seed, 10)))
	}
	if len(s.Options) > 0 {
		opts := &yaml.Node{Kind: yaml.MappingNode}
		for _, o := range s.Options {
			put(opts, o.Name, plain(o.Value))
		}
		put(root, "options", opts)
	}
	if len(s.Processes) > 0 {
		procs := &yaml.Node{Kind: yaml.SequenceNode}
		for _, pr := range s.Processes {
			m := &yaml.Node{Kind: yaml.MappingNode}
			put(m, "node", str(pr.Node))
			put(m, "name", str(pr.Name))
			argv := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, a := range pr.Command {
				argv.Content = append(argv.Content, str(a))
			}
			put(m, "command", argv)
			if len(pr.Env) > 0 {
				env := &yaml.Node{Kind: yaml.MappingNode}
				keys := make([]string, 0, len(pr.Env))
				for k := range pr.Env {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				for _, k := range keys {
					put(env, k, str(pr.Env[k]))
				}
				put(m, "env", env)
			}
			procs.Content = append(procs.Content, m)
		}
		put(root, "processes", procs)
	}
	if len(s.Steps) > 0 {
		steps := &yaml.Node{Kind: yaml.SequenceNode}
		for i, st := range s.Steps {
			n, err := encode(reflect.ValueOf(st))
			if err != nil {
				return nil, fmt.Errorf("scenario %s: step %d: %w", s.Name, i+1, err)
			}
			n.Style = 0 // a block per step; its lists and probe stay on one line
			steps.Content = append(steps.Content, n)
		}
		put(root, "steps", steps)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	return buf.Bytes(), nil
}

// encode is decode's inverse: v as a node, a struct's zero fields left out and a field
// that is a list of one string written as that string.
func encode(v reflect.Value) (*yaml.Node, error) {
	switch v.Kind() {
	case reflect.Pointer:
		return encode(v.Elem())
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		for _, f := range yamlFields(v.Type()) {
			fv := v.Field(f.index)
			if fv.IsZero() {
				continue
			}
			if fv.Kind() == reflect.Slice && fv.Len() == 1 && fv.Index(0).Kind() == reflect.String {
				fv = fv.Index(0) // targets: leader
			}
			n, err := encode(fv)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.name, err)
			}
			m.Content = append(m.Content, str(f.name), n)
		}
		return m, nil
	case reflect.Slice:
		seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for i := range v.Len() {
			n, err := encode(v.Index(i))
			if err != nil {
				return nil, err
			}
			seq.Content = append(seq.Content, n)
		}
		return seq, nil
	}
	switch {
	case v.Type() == durationType:
		return plain(time.Duration(v.Int()).String()), nil
	case v.Kind() == reflect.String:
		return str(v.String()), nil
	case v.Kind() == reflect.Int:
		return plain(strconv.FormatInt(v.Int(), 10)), nil
	case v.Kind() == reflect.Float64:
		return plain(strconv.FormatFloat(v.Float(), 'g', -1, 64)), nil
	case v.Kind() == reflect.Bool:
		return plain(strconv.FormatBool(v.Bool())), nil
	}
	return nil, fmt.Errorf("cannot write a %s (a bug: see scenario.encode)", v.Type())
}

// str is a string, quoted where YAML would read it as something else.
func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// plain is a number, duration or flag value, written as it is ("" quoted: plain, it
// would read as no value).
func plain(s string) *yaml.Node {
	if s == "" {
		return str(s)
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Value: s}
}
