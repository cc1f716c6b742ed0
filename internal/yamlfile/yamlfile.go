// Package yamlfile holds what dt's strict YAML readers (topology files, sweep files,
// scenario files) share: the error at a place in a file, and yaml.v3 node helpers.
package yamlfile

import (
	"fmt"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Error is a problem at a place in a file: "file:line:column: msg", "file:line: msg"
// when only the line is known, "file: msg" when neither is.
type Error struct {
	File         string
	Line, Column int // 0 when unknown
	Msg          string
}

func (e *Error) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Column == 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

// Errorf returns an Error in file at n's line and column; at no place when n is nil.
func Errorf(file string, n *yaml.Node, format string, a ...any) *Error {
	e := &Error{File: file, Msg: fmt.Sprintf(format, a...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// SplitLine splits one of yaml.v3's messages, "line 3: msg" or "yaml: line 3: msg",
// into the line and the rest; ok is false when msg is not of that form.
func SplitLine(msg string) (line int, rest string, ok bool) {
	g := lineRE.FindStringSubmatch(msg)
	if g == nil {
		return 0, "", false
	}
	line, _ = strconv.Atoi(g[1])
	return line, g[2], true
}

// ValueNode returns the value of key in mapping n, or nil.
func ValueNode(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// IsNull is true for a value that was not given (nil, or a zero Node a struct field
// keeps for an absent key) or given as null (~, null, or nothing after the colon).
func IsNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}
