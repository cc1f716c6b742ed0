package yamlfile

import (
	"testing"

	"gopkg.in/yaml.v3"
)

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f.yaml", Line: 3, Column: 5, Msg: "bad"}, "f.yaml:3:5: bad"},
		{Error{File: "f.yaml", Line: 3, Msg: "bad"}, "f.yaml:3: bad"},
		{Error{File: "f.yaml", Column: 5, Msg: "bad"}, "f.yaml: bad"},
		{Error{File: "f.yaml", Msg: "bad"}, "f.yaml: bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestErrorfAtNode(t *testing.T) {
	if e := Errorf("f", &yaml.Node{Line: 2, Column: 7}, "x %d", 1); e.Error() != "f:2:7: x 1" {
		t.Errorf("got %q", e)
	}
	if e := Errorf("f", nil, "x"); e.Error() != "f: x" {
		t.Errorf("got %q", e)
	}
}

func TestSplitLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		line int
		rest string
		ok   bool
	}{
		{"line 3: did not find expected key", 3, "did not find expected key", true},
		{"yaml: line 12: mapping values are not allowed", 12, "mapping values are not allowed", true},
		{"yaml: did not find expected node content", 0, "", false},
		{"yaml: yaml: line 1: x", 0, "", false},
	} {
		line, rest, ok := SplitLine(tc.in)
		if line != tc.line || rest != tc.rest || ok != tc.ok {
			t.Errorf("SplitLine(%q) = %d, %q, %v; want %d, %q, %v", tc.in, line, rest, ok, tc.line, tc.rest, tc.ok)
		}
	}
}

func TestValueNodeAndIsNull(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("a: 1\nb: ~\nc:\n"), &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	if v := ValueNode(root, "a"); v == nil || v.Value != "1" || IsNull(v) {
		t.Errorf("a: got %+v", v)
	}
	for _, k := range []string{"b", "c"} {
		if v := ValueNode(root, k); v == nil || !IsNull(v) {
			t.Errorf("%s: want a null value, got %+v", k, v)
		}
	}
	if ValueNode(root, "d") != nil || ValueNode(root.Content[1], "a") != nil || ValueNode(nil, "a") != nil {
		t.Error("want nil for a missing key or a node that is not a mapping")
	}
	if !IsNull(nil) || !IsNull(&yaml.Node{}) {
		t.Error("nil and the zero node are null")
	}
}
