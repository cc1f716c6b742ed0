package shell

import (
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/term"
)

// readLines reads n lines from a line editor fed by ctrlCReader, the way runTerminal
// does, with what was typed written to the pipe in one go (a fast typist, or a loaded
// machine where the shell reads late): for each line, its text and whether Ctrl-C
// ended it.
func readLines(t *testing.T, typed string, n int) (lines []string, interrupted []bool) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := io.WriteString(w, typed); err != nil {
		t.Fatal(err)
	}
	intr := &ctrlCReader{r: r}
	tm := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{intr, io.Discard}, Prompt)
	for i := 0; i < n; i++ {
		got := make(chan string, 1)
		go func() {
			l, err := tm.ReadLine()
			if err != nil {
				l = "error: " + err.Error()
			}
			got <- l
		}()
		select {
		case l := <-got:
			lines = append(lines, l)
			interrupted = append(interrupted, intr.interrupted.Swap(false))
		case <-time.After(5 * time.Second):
			t.Fatalf("%q: line %d never came (lines so far %q): typed keys were lost", typed, i+1, lines)
		}
	}
	return lines, interrupted
}

// TestCtrlCKeepsWhatFollows: Ctrl-C drops the line being typed, and only that line:
// the keys typed after it, even when they arrive in the same read, make the next line.
func TestCtrlCKeepsWhatFollows(t *testing.T) {
	for _, tc := range []struct {
		typed string
		lines []string
		intr  []bool
	}{
		{"kill lead\x03leader\r", []string{"kill lead", "leader"}, []bool{true, false}},
		{"\x03status\r", []string{"", "status"}, []bool{true, false}},
		{"kill lead\x03\x03leader\r", []string{"kill lead", "", "leader"}, []bool{true, true, false}},
		{"status\rkill lead\x03leader\r", []string{"status", "kill lead", "leader"}, []bool{false, true, false}},
		{"status\r\x03leader\r", []string{"status", "", "leader"}, []bool{false, true, false}},
	} {
		t.Run(fmt.Sprintf("%q", tc.typed), func(t *testing.T) {
			lines, intr := readLines(t, tc.typed, len(tc.lines))
			for i := range tc.lines {
				if lines[i] != tc.lines[i] || intr[i] != tc.intr[i] {
					t.Errorf("line %d = %q (Ctrl-C %v), want %q (Ctrl-C %v)",
						i+1, lines[i], intr[i], tc.lines[i], tc.intr[i])
				}
			}
		})
	}
}
