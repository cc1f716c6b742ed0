package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/internal/yamlfile"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/topology"
	"github.com/dtlab/dt/workloads"
	"gopkg.in/yaml.v3"
)

// topKeys are a scenario file's keys, in the order Marshal writes them.
var topKeys = []string{"name", "system", "topology", "workload", "duration", "seed", "options", "processes", "steps"}

// required are the keys a scenario must set, with what to write.
var required = []struct{ key, want string }{
	{"system", "dt run's SYSTEM (" + strings.Join(systems.Names(), ", ") + ")"},
	{"topology", "a topology builder (" + strings.Join(topology.Names(), ", ") + ") or a topology file"},
	{"duration", "the workload's length, e.g. 30s"},
}

var processKeys = []string{"node", "name", "command", "env"}

// stepFields are faults.Step's fields by their yaml names: the keys of a step.
var stepFields = yamlFields(reflect.TypeFor[faults.Step]())

// topLevelFlags are dt run flags a scenario sets with its own keys, not options.
var topLevelFlags = []string{"duration", "seed"}

// validName keeps a scenario's or a process's name usable in file names.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// yamlField is a struct field read from the yaml key name.
type yamlField struct {
	name  string
	index int
}

// yamlFields lists t's fields that have a yaml name, in declaration order.
func yamlFields(t reflect.Type) []yamlField {
	var out []yamlField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.IsExported() && name != "" && name != "-" {
			out = append(out, yamlField{name, i})
		}
	}
	return out
}

func fieldNames(fs []yamlField) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.name
	}
	return out
}

func fieldIndex(fs []yamlField, name string) int {
	i := slices.IndexFunc(fs, func(f yamlField) bool { return f.name == name })
	return fs[i].index
}

// parser collects every problem of one file, each at its position.
type parser struct {
	file string
	errs []*Error
}

func (p *parser) errorf(n *yaml.Node, format string, a ...any) {
	p.errs = append(p.errs, yamlfile.Errorf(p.file, n, format, a...))
}

func (p *parser) err() error { return joinSorted(p.errs) }

// yamlError turns a yaml.v3 syntax error ("yaml: line 3: did not find expected key")
// into an Error at that line.
func (p *parser) yamlError(err error) {
	e := &Error{File: p.file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if line, msg, ok := yamlfile.SplitLine(e.Msg); ok {
		e.Line, e.Msg = line, msg
	}
	p.errs = append(p.errs, e)
}

// document parses b into its root mapping; nil (the problem recorded) when b is not one
// YAML document holding a mapping.
func (p *parser) document(b []byte) *yaml.Node {
	empty := func() { p.errorf(nil, "empty scenario: want a mapping with keys %s", strings.Join(topKeys, ", ")) }
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			empty()
		} else {
			p.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errorf(&extra, "a scenario file holds one YAML document; a second one starts here")
	} else if !errors.Is(err, io.EOF) {
		p.yamlError(err)
	}
	if len(doc.Content) == 0 || yamlfile.IsNull(doc.Content[0]) {
		empty()
		return nil
	}
	root := deref(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "a scenario is a mapping with keys %s, not %s", strings.Join(topKeys, ", "), describe(root))
		return nil
	}
	return root
}

func (p *parser) scenario(root *yaml.Node) *Scenario {
	s := &Scenario{File: p.file, Name: defaultName(p.file), Workload: "uniform", places: &places{}}
	got := map[string]bool{}
	for _, e := range p.mapping(root, "the scenario", topKeys) {
		key, v := e.key.Value, deref(e.value)
		got[key] = true
		switch key {
		case "options":
			s.Options = p.options(v)
			continue
		case "processes":
			p.processes(s, v)
			continue
		case "steps":
			p.steps(s, v)
			continue
		}
		val, ok := p.scalar(v, key)
		if !ok {
			continue
		}
		switch key {
		case "name":
			s.Name = val
			if !validName.MatchString(val) {
				p.errorf(v, "name %q: use letters, digits, '.', '_' and '-' (it names the run's directory)", val)
			}
		case "system":
			s.System = val
			if _, err := systems.Lookup(val); err != nil {
				p.errorf(v, "system: %v", err)
			}
		case "topology":
			switch {
			case topology.IsFile(val):
				s.Topology = resolveTopology(p.file, val)
			case slices.Contains(topology.Names(), val):
				s.Topology = val
			default:
				p.errorf(v, "topology: unknown topology %q: valid topologies are %s, or a topology file (a path relative to this file, ending in .yaml)",
					val, strings.Join(topology.Names(), ", "))
			}
		case "workload":
			s.Workload = val
			if _, err := workloads.Lookup(val); err != nil {
				p.errorf(v, "workload: %v", err)
			}
		case "duration":
			d, err := faults.ParseDuration(val)
			if err == nil && d == 0 {
				err = errors.New("the workload's length must be more than 0")
			}
			if err != nil {
				p.errorf(v, "duration: %v", err)
			}
			s.Duration = d
		case "seed":
			seed, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				p.errorf(v, "seed: %q: want a whole number", val)
			}
			s.Seed = &seed
		}
	}
	for _, r := range required {
		if !got[r.key] {
			p.errorf(nil, "%s is required: %s", r.key, r.want)
		}
	}
	return s
}

// options reads the other dt run flags; their names and values are the CLI's to check.
func (p *parser) options(n *yaml.Node) []Option {
	if yamlfile.IsNull(n) {
		return nil
	}
	var out []Option
	for _, e := range p.mapping(n, "options", nil) {
		name := e.key.Value
		switch {
		case slices.Contains(topLevelFlags, name):
			p.errorf(e.key, "options: %s: set it with the scenario's own %s: key", name, name)
			continue
		case strings.HasPrefix(name, "-"):
			p.errorf(e.key, "options: %q: write the flag's long name without dashes", name)
			continue
		}
		if v, ok := p.scalar(e.value, "options: "+name); ok {
			out = append(out, Option{Name: name, Value: v, Line: e.key.Line})
		}
	}
	return out
}

func (p *parser) processes(s *Scenario, n *yaml.Node) {
	first := map[[2]string]int{} // (node, name) -> process number
	for i, item := range p.sequence(n, "processes") {
		what := fmt.Sprintf("process %d", i+1)
		pr := Process{Line: item.Line}
		nodeAt := item
		got := map[string]bool{}
		for _, e := range p.mapping(item, what, processKeys) {
			key := e.key.Value
			got[key] = true
			switch key {
			case "node":
				pr.Node, _ = p.scalar(e.value, what+": node")
				nodeAt = deref(e.value)
			case "name":
				pr.Name, _ = p.scalar(e.value, what+": name")
				if pr.Name != "" && !validName.MatchString(pr.Name) {
					p.errorf(e.value, "%s: name %q: use letters, digits, '.', '_' and '-' (it names the process's log file)", what, pr.Name)
				}
			case "command":
				pr.Command = p.command(e.value, what+": command")
			case "env":
				pr.Env = p.env(e.value, what+": env")
			}
		}
		if item.Kind == yaml.MappingNode {
			for _, k := range []string{"node", "name", "command"} {
				if !got[k] {
					p.errorf(item, "%s: %s is required", what, k)
				}
			}
		}
		if k := [2]string{pr.Node, pr.Name}; pr.Node != "" && pr.Name != "" {
			if j, dup := first[k]; dup {
				p.errorf(nodeAt, "%s: %s on %s is already process %d: names must differ on a node", what, pr.Name, pr.Node, j)
			} else {
				first[k] = i + 1
			}
		}
		s.Processes = append(s.Processes, pr)
		s.places.procNodes = append(s.places.procNodes, nodeAt)
	}
}

// command reads argv: a list, never a string for a shell to split.
func (p *parser) command(n *yaml.Node, what string) []string {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s: want a list (argv, run without a shell), e.g. [dt, probe, etcd], not %s", what, describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		p.errorf(n, "%s: empty: want at least the program", what)
	}
	var argv []string
	for _, c := range n.Content {
		a, ok := p.scalar(c, what)
		if ok && len(argv) == 0 && a == "" {
			p.errorf(c, "%s: the program is empty", what)
		}
		argv = append(argv, a)
	}
	return argv
}

func (p *parser) env(n *yaml.Node, what string) map[string]string {
	if yamlfile.IsNull(n) {
		return nil
	}
	env := map[string]string{}
	for _, e := range p.mapping(n, what, nil) {
		if k := e.key.Value; k == "" || strings.Contains(k, "=") {
			p.errorf(e.key, "%s: variable name %q: must be non-empty, without '='", what, k)
		}
		env[e.key.Value], _ = p.scalar(e.value, what+": "+e.key.Value)
	}
	return env
}

// steps reads the timeline and checks it with faults' rules, leaving the node names
// and selectors for Validate: here every word used as a node is taken to be one.
func (p *parser) steps(s *Scenario, n *yaml.Node) {
	items := p.sequence(n, "steps")
	s.Steps = make([]faults.Step, len(items))
	s.places.steps = make([]stepPlace, len(items))
	for i, item := range items {
		s.Steps[i], s.places.steps[i] = p.step(i, item)
	}
	for _, se := range stepErrors(faults.ValidateTimeline(s.Steps, faults.Cluster{Nodes: nodeWords(s.Steps)})) {
		if se.Index >= 0 && se.Index < len(items) && s.places.steps[se.Index].bad[se.Field] {
			continue
		}
		p.errs = append(p.errs, s.stepError(se))
	}
}

func (p *parser) step(i int, n *yaml.Node) (faults.Step, stepPlace) {
	st := faults.Step{Source: fmt.Sprintf("%s:%d", p.file, n.Line)}
	sp := stepPlace{node: n, keys: map[string]*yaml.Node{}, values: map[string]*yaml.Node{}, bad: map[string]bool{}}
	label := fmt.Sprintf("step %d", i+1)
	if a := deref(yamlfile.ValueNode(n, "action")); a != nil && a.Kind == yaml.ScalarNode {
		label += " (" + a.Value + ")"
	}
	if n.Kind != yaml.MappingNode {
		p.mapping(n, label, nil) // the error
		for _, f := range stepFields {
			sp.bad[f.name] = true
		}
		sp.bad[""] = true
		return st, sp
	}
	v := reflect.ValueOf(&st).Elem()
	for _, e := range p.mapping(n, label, fieldNames(stepFields)) {
		name := e.key.Value
		sp.keys[name], sp.values[name] = e.key, e.value
		before := len(p.errs)
		p.decode(e.value, v.Field(fieldIndex(stepFields, name)), label+": "+name)
		sp.bad[name] = len(p.errs) > before
	}
	if sp.keys["action"] == nil {
		p.errorf(n, "%s: action is required: valid actions are %s", label, strings.Join(faults.ActionNames(), ", "))
		sp.bad["action"] = true
	}
	return st, sp
}

// nodeWords are the words steps use as nodes: targets, group members and probes' from.
func nodeWords(steps []faults.Step) []string {
	var words []string
	add := func(ws ...string) {
		for _, w := range ws {
			if !strings.HasPrefix(w, "@") {
				words = append(words, w)
			}
		}
	}
	for _, s := range steps {
		add(s.Targets...)
		for _, g := range s.Groups {
			add(g...)
		}
		if s.Probe != nil && s.Probe.From != "" {
			add(s.Probe.From)
		}
	}
	return words
}

var durationType = reflect.TypeFor[faults.Duration]()

// decode reads n into v by v's type, the way faults.Step's fields are typed: a Duration
// in faults.ParseDuration's forms, a list that may be written as its one element, a
// struct by its yaml field names. what names the value in errors.
func (p *parser) decode(n *yaml.Node, v reflect.Value, what string) {
	n = deref(n)
	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		p.decode(n, e.Elem(), what)
		v.Set(e)
		return
	case reflect.Struct:
		fields := yamlFields(v.Type())
		for _, e := range p.mapping(n, what, fieldNames(fields)) {
			p.decode(e.value, v.Field(fieldIndex(fields, e.key.Value)), what+": "+e.key.Value)
		}
		return
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && !yamlfile.IsNull(n) {
			n = &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{n}}
		}
		if n.Kind != yaml.SequenceNode {
			p.errorf(n, "%s: want a list or a single value, not %s", what, describe(n))
			return
		}
		for _, c := range n.Content {
			e := reflect.New(v.Type().Elem()).Elem()
			p.decode(c, e, what)
			v.Set(reflect.Append(v, e))
		}
		return
	}
	s, ok := p.scalar(n, what)
	if !ok {
		return
	}
	switch {
	case v.Type() == durationType:
		d, err := faults.ParseDuration(s)
		if err != nil {
			p.errorf(n, "%s: %v", what, err)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		i, err := strconv.Atoi(s)
		if err != nil {
			p.errorf(n, "%s: %q: want a whole number", what, s)
		}
		v.SetInt(int64(i))
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			p.errorf(n, "%s: %q: want a number", what, s)
			return
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Bool:
		switch s {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			p.errorf(n, "%s: %q: want true or false", what, s)
		}
	default:
		p.errorf(n, "%s: this dt cannot read a %s (a bug: see scenario.decode)", what, v.Type())
	}
}

// entry is one key and value of a mapping.
type entry struct{ key, value *yaml.Node }

// mapping returns n's entries in order; what names n in errors. A key not in valid (nil:
// any key), a repeated key or a key that is not a plain value is an error, and left out.
func (p *parser) mapping(n *yaml.Node, what string, valid []string) []entry {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s: want a mapping (key: value), not %s", what, describe(n))
		return nil
	}
	seen := map[string]*yaml.Node{}
	var out []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k, "%s: a key must be a name, not %s", what, describe(k))
		case valid != nil && !slices.Contains(valid, k.Value):
			p.errorf(k, "unknown key %q in %s; valid keys are %s", k.Value, what, strings.Join(valid, ", "))
		case seen[k.Value] != nil:
			p.errorf(k, "%s: %s given twice (first on line %d)", what, k.Value, seen[k.Value].Line)
		default:
			seen[k.Value] = k
			out = append(out, entry{k, v})
		}
	}
	return out
}

// sequence returns a list's items; an empty value is an empty list.
func (p *parser) sequence(n *yaml.Node, what string) []*yaml.Node {
	n = deref(n)
	if yamlfile.IsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s: want a list (one \"- \" line per item), not %s", what, describe(n))
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = deref(c)
	}
	return items
}

// scalar returns n's value when it is a single, non-empty value.
func (p *parser) scalar(n *yaml.Node, what string) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || yamlfile.IsNull(n) {
		p.errorf(n, "%s: want a single value, not %s", what, describe(n))
		return "", false
	}
	return n.Value, true
}

func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case yamlfile.IsNull(n):
		return "an empty value"
	}
	return strconv.Quote(n.Value)
}

// deref follows aliases (*name) to their anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}
