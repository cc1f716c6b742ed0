package scenario

import (
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/topology"
)

// The example scenarios parse, validate against the topology they name (with the node
// counts their options set, as the CLI would) and survive a round trip.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/scenarios/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Steps) == 0 {
				t.Error("no steps")
			}
			o := topology.BuildOptions{Servers: 3, Clients: 1}
			for _, opt := range s.Options {
				n, _ := strconv.Atoi(opt.Value)
				switch opt.Name {
				case "number-nodes":
					o.Servers = n
				case "number-clients":
					o.Clients = n
				}
			}
			spec, err := topology.Build(s.Topology, o)
			if err != nil {
				t.Fatal(err)
			}
			c := faults.Cluster{Nodes: spec.NodeNames()}
			for _, n := range spec.Servers() {
				c.Servers = append(c.Servers, n.Name)
			}
			if err := s.Validate(c); err != nil {
				t.Fatal(err)
			}
			b, err := s.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(f, b)
			if err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			if got, want := stripped(back), stripped(s); !reflect.DeepEqual(got, want) {
				t.Errorf("round trip:\n%s\ngot  %+v\nwant %+v", b, got, want)
			}
		})
	}
}
