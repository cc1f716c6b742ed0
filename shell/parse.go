package shell

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnterminatedQuote is returned by Split for a line whose quote is not closed.
var ErrUnterminatedQuote = errors.New("unterminated quote")

// Split breaks a line into words the way a POSIX shell does for simple commands:
// whitespace separates words, 'single quotes' keep everything literally, "double quotes"
// keep spaces and let a backslash escape \ " $ and `, a backslash outside quotes escapes
// the next character, and an unquoted # at the start of a word begins a comment. There
// is no expansion, no pipes and no redirection: `s1 sh -c '...'` gives those.
func Split(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	const (
		plain = iota
		single
		double
	)
	state := plain
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch state {
		case single:
			if r == '\'' {
				state = plain
			} else {
				cur.WriteRune(r)
			}
		case double:
			switch {
			case r == '"':
				state = plain
			case r == '\\' && i+1 < len(rs) && strings.ContainsRune("\\\"$`", rs[i+1]):
				i++
				cur.WriteRune(rs[i])
			default:
				cur.WriteRune(r)
			}
		default:
			switch {
			case r == ' ' || r == '\t' || r == '\n' || r == '\r':
				if inWord {
					words = append(words, cur.String())
					cur.Reset()
					inWord = false
				}
			case r == '#' && !inWord:
				return words, nil
			case r == '\'':
				state, inWord = single, true
			case r == '"':
				state, inWord = double, true
			case r == '\\':
				inWord = true
				if i+1 < len(rs) {
					i++
					cur.WriteRune(rs[i])
				}
			default:
				inWord = true
				cur.WriteRune(r)
			}
		}
	}
	if state != plain {
		return nil, fmt.Errorf("%w in %q", ErrUnterminatedQuote, line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
