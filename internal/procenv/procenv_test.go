package procenv

import (
	"bufio"
	"os"
	"os/exec"
	"testing"
)

func TestContains(t *testing.T) {
	env := []byte("A=1\x00DT_RUN_ID=abc\x00B=DT_RUN_ID=abc\x00")
	for kv, want := range map[string]bool{
		"A=1": true, "DT_RUN_ID=abc": true, "B=DT_RUN_ID=abc": true,
		"DT_RUN_ID=ab": false, "RUN_ID=abc": false, "": false,
	} {
		if got := Contains(env, kv); got != want {
			t.Errorf("Contains(%q, %q) = %v, want %v", env, kv, got, want)
		}
	}
}

// TestReadWhileExecing reads the environment of processes just as they exec: every
// answer is the whole environment, or nothing (in the middle of the exec), never the
// start of it without the entry that comes last. With os.ReadFile instead of Read, 3 to 5
// reads in a hundred came back cut off here.
func TestReadWhileExecing(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	empty := 0
	for range 200 {
		cmd := exec.Command("sh", "-c", "echo started; exec sleep 100")
		cmd.Env = append(os.Environ(), "DT_PROCENV_TEST=last")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		env, err := Read(cmd.Process.Pid) // sh is about to exec sleep, or doing it, or done
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(env) == 0:
			empty++
		case !Contains(env, "DT_PROCENV_TEST=last"):
			t.Fatalf("environment read as %d bytes without its last entry: %q", len(env), env)
		}
	}
	t.Logf("%d of 200 reads fell in the middle of an exec (empty)", empty)
	self, err := Read(os.Getpid())
	if err != nil || len(self) == 0 {
		t.Fatalf("our own environment: %d bytes, %v", len(self), err)
	}
}
