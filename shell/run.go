package shell

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// Mode is how the shell gets its commands.
type Mode int

const (
	// ModeNone: stdin gives nothing to read (/dev/null, or a job in the background of a
	// terminal): there is no prompt, and the caller keeps the topology up until it is
	// told to stop, as `dt up` always did.
	ModeNone Mode = iota
	// ModeTerminal: a terminal in the foreground: line editing, history, Tab completion.
	ModeTerminal
	// ModeScript: a pipe or a file: every command is echoed after the prompt with its
	// output, a failing command does not stop the script, and the shell ends at EOF.
	ModeScript
)

func (m Mode) String() string {
	switch m {
	case ModeTerminal:
		return "terminal"
	case ModeScript:
		return "script"
	}
	return "none"
}

// DetectMode tells how commands can be read from in, given where output goes.
func DetectMode(in, out *os.File) Mode {
	st, err := in.Stat()
	if err != nil {
		return ModeNone
	}
	switch {
	case st.Mode()&os.ModeCharDevice != 0:
		fd := int(in.Fd())
		if !term.IsTerminal(fd) {
			return ModeNone // /dev/null and the like
		}
		if pgrp, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err != nil || pgrp != unix.Getpgrp() {
			return ModeNone // a background job: reading would stop it (SIGTTIN)
		}
		if !term.IsTerminal(int(out.Fd())) {
			return ModeScript
		}
		return ModeTerminal
	case st.Mode()&(os.ModeNamedPipe|os.ModeSocket) != 0, st.Mode().IsRegular():
		return ModeScript
	}
	return ModeNone
}

// Run reads and runs commands until exit, EOF (Ctrl-D) or ctx ends, then ends what the
// session started in the background (Close). In ModeScript the error says how many
// commands failed (wrapping ErrCommandsFailed). In ModeTerminal, Ctrl-C interrupts the
// running command (or clears the line) and never ends the session: ctx should be
// cancelled by SIGTERM and SIGHUP only.
func (s *Shell) Run(ctx context.Context, mode Mode, in, out *os.File) error {
	s.session = ctx
	var err error
	switch mode {
	case ModeTerminal:
		err = s.runTerminal(ctx, in, out)
	case ModeScript:
		err = s.runScript(ctx, in)
	default:
		<-ctx.Done()
	}
	return errors.Join(err, s.Close())
}

// runScript runs the commands of r, echoing each after the prompt.
func (s *Shell) runScript(ctx context.Context, r io.Reader) error {
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
	}()
	total, failed := 0, 0
loop:
	for {
		var line string
		var ok bool
		select {
		case <-ctx.Done():
			return fmt.Errorf("script interrupted: %w", ctx.Err())
		case line, ok = <-lines:
		}
		if !ok {
			break
		}
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		s.printf("%s%s\n", Prompt, strings.TrimSpace(line))
		total++
		err := s.Exec(ctx, line)
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("script interrupted at %q: %w", strings.TrimSpace(line), ctx.Err())
		case errors.Is(err, errExit):
			break loop
		case err != nil:
			failed++
			fmt.Fprintf(s.err, "error: %v\n", err)
		}
	}
	select {
	case err := <-readErr:
		if err != nil {
			return fmt.Errorf("read commands: %w", err)
		}
	default:
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d", ErrCommandsFailed, failed, total)
	}
	return nil
}

// runTerminal is the interactive prompt. The terminal is in raw mode only while a line
// is read, so that programs run in a node see a normal terminal and Ctrl-C reaches them.
func (s *Shell) runTerminal(ctx context.Context, in, out *os.File) error {
	fd := int(in.Fd())
	intr := &ctrlCReader{r: in}
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{intr, out}, Prompt)
	t.AutoCompleteCallback = s.autoComplete
	resize := func() {
		if w, h, err := term.GetSize(int(out.Fd())); err == nil {
			_ = t.SetSize(w, h)
		}
	}
	resize()
	s.outMu.Lock()
	s.out, s.interactive = t, true
	s.outMu.Unlock()
	defer func() {
		s.outMu.Lock()
		s.out, s.interactive = s.opts.Out, false
		s.outMu.Unlock()
	}()

	// Ctrl-C while a command runs cancels it, unless a program run in a node has the
	// terminal: it gets the signal itself, as under any shell.
	var cmdMu sync.Mutex
	var cancelCmd context.CancelFunc
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGWINCH)
	done := make(chan struct{})
	defer func() { signal.Stop(sigs); close(done) }()
	go func() {
		for {
			select {
			case <-done:
				return
			case sig := <-sigs:
				if sig == syscall.SIGWINCH {
					resize()
					continue
				}
				if s.childOwnsTTY.Load() {
					continue
				}
				cmdMu.Lock()
				if cancelCmd != nil {
					cancelCmd()
				}
				cmdMu.Unlock()
			}
		}
	}()

	s.printf("Type help for the commands; Tab completes; Ctrl-D or exit tears everything down.\n")
	type readResult struct {
		line string
		err  error
	}
	var old *term.State // the mode to restore while the terminal is raw, else nil
	for {
		if old == nil {
			var err error
			if old, err = term.MakeRaw(fd); err != nil {
				return fmt.Errorf("terminal raw mode: %w", err)
			}
		}
		res := make(chan readResult, 1)
		go func() {
			l, err := t.ReadLine()
			res <- readResult{l, err}
		}()
		var r readResult
		select {
		case <-ctx.Done():
			_ = term.Restore(fd, old)
			fmt.Fprint(out, "\r\n")
			return nil
		case r = <-res:
		}
		if intr.interrupted.Swap(false) {
			// Ctrl-C drops the line. The terminal stays raw: keys typed next, a second
			// Ctrl-C among them, must not meet the cooked mode's echo and its SIGINT.
			continue
		}
		_ = term.Restore(fd, old)
		old = nil
		if errors.Is(r.err, io.EOF) {
			fmt.Fprint(out, "exit\n") // after the prompt, as a shell echoes Ctrl-D
			return nil
		}
		if r.err != nil && !errors.Is(r.err, term.ErrPasteIndicator) {
			return fmt.Errorf("read command: %w", r.err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cmdMu.Lock()
		cancelCmd = cancel
		cmdMu.Unlock()
		err := s.Exec(cctx, r.line)
		cmdMu.Lock()
		cancelCmd = nil
		cmdMu.Unlock()
		interrupted := cctx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case errors.Is(err, errExit):
			return nil
		case interrupted:
			s.printf("interrupted\n")
		case err != nil:
			s.printf("error: %v\n", err)
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// ctrlCReader turns Ctrl-C typed at the prompt (a byte in raw mode) into Enter and
// remembers it, so that the line is dropped: x/term would report Ctrl-C as EOF, which
// here means tearing everything down. What is typed after Ctrl-C is the next line and is
// kept, even when it comes in the same read.
//
// Ctrl-C is handed on alone, in a Read of its own, so that interrupted belongs to the
// line it ends: x/term reads only when the bytes it holds end no line (it returns a line
// as soon as one is complete and keeps the rest for the next ReadLine), so the Enter
// that Ctrl-C becomes ends the line being typed, the one runTerminal then drops. Handed
// on with what came before it ("status\r\x03"), it would drop the line before.
type ctrlCReader struct {
	r           io.Reader
	buf         [256]byte
	pending     []byte // read from r, not yet handed on
	err         error  // r's error, returned once pending is handed on
	interrupted atomic.Bool
}

func (c *ctrlCReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		n, err := c.r.Read(c.buf[:])
		c.pending, c.err = c.buf[:n], err
		if n == 0 {
			return 0, err
		}
	}
	if c.pending[0] == 3 {
		c.pending = c.pending[1:]
		c.interrupted.Store(true)
		p[0] = '\r'
		return 1, nil
	}
	n := len(c.pending)
	if i := bytes.IndexByte(c.pending, 3); i >= 0 {
		n = i // up to Ctrl-C; it comes alone next time
	}
	n = copy(p, c.pending[:n])
	c.pending = c.pending[n:]
	return n, nil
}

// autoComplete is the terminal's Tab key: it completes the word at the cursor, as far as
// the candidates agree, and lists them when they do not.
func (s *Shell) autoComplete(line string, pos int, key rune) (string, int, bool) {
	if key != '\t' {
		return "", 0, false
	}
	start, cands := s.Complete(line, pos)
	if len(cands) == 0 {
		return "", 0, false
	}
	word := line[start:pos]
	if len(cands) == 1 {
		ins := cands[0]
		if !strings.HasSuffix(ins, ",") {
			ins += " "
		}
		return line[:start] + ins + line[pos:], start + len(ins), true
	}
	common := cands[0]
	for _, c := range cands[1:] {
		for !strings.HasPrefix(c, common) {
			common = common[:len(common)-1]
		}
	}
	if len(common) > len(word) {
		return line[:start] + common + line[pos:], start + len(common), true
	}
	s.Note("%s", strings.Join(cands, "  "))
	return "", 0, false
}
