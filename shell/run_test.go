package shell

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// openPTY returns the two ends of a new pseudo-terminal (what `script` or tmux make).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	sl, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sl.Close() })
	if err := unix.IoctlSetWinsize(int(sl.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		t.Fatalf("pty size: %v", err)
	}
	return m, sl
}

// TestTerminalCtrlCThenTyped types at a real terminal, all in one write as when the shell
// reads late: a line dropped with Ctrl-C (twice), then a command, which must run, and
// the dropped one must not. Without a system both commands fail, which says which ran.
func TestTerminalCtrlCThenTyped(t *testing.T) {
	s, _, _ := newTestShell(t)
	master, slave := openPTY(t)
	var (
		mu     sync.Mutex
		screen bytes.Buffer
	)
	shown := func() string { mu.Lock(); defer mu.Unlock(); return screen.String() }
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b) // EIO once the slave is closed
			mu.Lock()
			screen.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.runTerminal(ctx, slave, slave) }()
	// Type once the prompt shows: the terminal is raw then. Before, the kernel's cooked
	// mode would take Ctrl-C as a signal and Ctrl-D as end of file.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(shown(), Prompt); {
		if time.Now().After(deadline) {
			t.Fatalf("no prompt: %q", shown())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := io.WriteString(master, "kill lead\x03\x03leader\r\x04"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runTerminal: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the shell never ended: Ctrl-D after the command was lost")
	}
	st, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if st.Lflag&unix.ICANON == 0 {
		t.Error("the terminal was left raw")
	}
	slave.Close()
	master.Close()
	<-copied
	out := shown()
	if !strings.Contains(out, "error: leader: no system runs") {
		t.Errorf("leader, typed after Ctrl-C, did not run:\n%q", out)
	}
	if strings.Contains(out, "error: kill:") {
		t.Errorf("kill lead ran, though Ctrl-C dropped it:\n%q", out)
	}
}
