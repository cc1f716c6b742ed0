package shell

import (
	"slices"
	"testing"
)

// The disk actions at the prompt: `do disk-error s1 errno=EIO ops=fsync,write`.
func TestParseDiskStep(t *testing.T) {
	st, err := parseStep([]string{"disk-error", "s1", "errno=EIO", "ops=fsync,write", "path=member/wal/*.wal", "probability=0.5", "duration=5s"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Errno != "EIO" || !slices.Equal(st.Ops, []string{"fsync", "write"}) || st.Path != "member/wal/*.wal" || st.Probability != 0.5 {
		t.Errorf("step: %+v", st)
	}
	st, err = parseStep([]string{"disk-slow", "leader", "delay=50ms", "ops=[fsync, read]"})
	if err != nil || !slices.Equal(st.Ops, []string{"fsync", "read"}) {
		t.Errorf("ops as a list: %+v, %v", st, err)
	}
	if _, err := parseStep([]string{"corrupt", "s2", "file=wal", "mode=flip", "bytes=4"}); err != nil {
		t.Errorf("corrupt: %v", err)
	}
}
