package disk

import (
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRuleCheck(t *testing.T) {
	for _, tc := range []struct {
		r   Rule
		bad string
	}{
		{Rule{Kind: KindError, Errno: "EIO", Ops: []string{"fsync,write"}}, ""},
		{Rule{Kind: KindError, Errno: "EBOGUS"}, "unknown errno"},
		{Rule{Kind: KindError, Errno: "EIO", Ops: []string{"sync"}}, "unknown operation"},
		{Rule{Kind: KindError, Errno: "EIO", Probability: 2}, "probability"},
		{Rule{Kind: KindSlow}, "delay > 0"},
		{Rule{Kind: KindSlow, Delay: time.Millisecond, Jitter: time.Second}, "jitter"},
		{Rule{Kind: KindFull, Bytes: -1}, "bytes"},
		{Rule{Kind: KindError, Errno: "EIO", Path: "/abs"}, "relative"},
		{Rule{Kind: KindError, Errno: "EIO", Path: "[x"}, "glob"},
		{Rule{Kind: "melt"}, "rule kind"},
	} {
		err := tc.r.Check()
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%+v: %v", tc.r, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%+v: %v, want %q", tc.r, err, tc.bad)
		}
	}
}

func TestDecide(t *testing.T) {
	rs := NewRules(rand.New(rand.NewPCG(1, 2)))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rs.Add(Rule{ID: "e", Kind: KindError, Errno: "EROFS", Ops: []string{"fsync"}, Path: "member/wal/*.wal"}))
	must(rs.Add(Rule{ID: "s", Kind: KindSlow, Delay: 10 * time.Millisecond, Ops: []string{"write", "fsync"}}))
	if v := rs.Decide(OpFsync, "member/wal/0.wal", 0, true); v.Errno != syscall.EROFS || v.Delay != 10*time.Millisecond {
		t.Errorf("fsync of a wal: %+v", v)
	}
	if v := rs.Decide(OpFsync, "member/snap/db", 0, true); v.Errno != 0 || v.Delay != 10*time.Millisecond {
		t.Errorf("fsync of the db: %+v", v)
	}
	if v := rs.Decide(OpRead, "member/wal/0.wal", 0, true); v.Errno != 0 || v.Delay != 0 {
		t.Errorf("read: %+v", v)
	}
	if rs.Add(Rule{ID: "e", Kind: KindError, Errno: "EIO"}) == nil {
		t.Error("duplicate id accepted")
	}
	rs.Clear()
	must(rs.Add(Rule{ID: "f", Kind: KindFull, Bytes: 100}))
	if v := rs.Decide(OpWrite, "x", 60, true); v.Errno != 0 || v.Allow != 60 {
		t.Errorf("first write: %+v", v)
	}
	if v := rs.Decide(OpWrite, "x", 60, false); v.Allow != 40 {
		t.Errorf("probe write: %+v", v)
	}
	if v := rs.Decide(OpWrite, "x", 60, true); v.Errno != 0 || v.Allow != 40 {
		t.Errorf("short write: %+v", v)
	}
	if v := rs.Decide(OpWrite, "x", 1, true); v.Errno != syscall.ENOSPC {
		t.Errorf("full: %+v", v)
	}
	if v := rs.Decide(OpRead, "x", 0, true); v.Errno != 0 {
		t.Errorf("read on a full disk: %+v", v)
	}
	rs.Clear()
	must(rs.Add(Rule{ID: "p", Kind: KindError, Errno: "EIO", Probability: 0.3}))
	n := 0
	for range 10000 {
		if rs.Decide(OpWrite, "x", 1, true).Errno != 0 {
			n++
		}
	}
	if n < 2700 || n > 3300 {
		t.Errorf("p=0.3: %d of 10000 failed", n)
	}
}

func TestProbePath(t *testing.T) {
	for pat, want := range map[string]string{
		"":                 "dt-probe",
		"*.wal":            "dt-probe.wal",
		"member/wal/*.wal": "member/wal/dt-probe.wal",
		"member/snap/db":   "member/snap/db",
		"[0-9]?.snap":      "0x.snap",
	} {
		got, ok := ProbePath(pat)
		if got != want || !ok {
			t.Errorf("ProbePath(%q) = %q, %v; want %q", pat, got, ok, want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for s, want := range map[string]int64{"0": 0, "4096": 4096, "64KiB": 64 << 10, "10MB": 10e6, "1g": 1 << 30, "1.5k": 1536} {
		if got, err := ParseBytes(s); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"-1", "ten", "1x"} {
		if _, err := ParseBytes(s); err == nil {
			t.Errorf("ParseBytes(%q) accepted", s)
		}
	}
}

func TestGaps(t *testing.T) {
	spans := addSpan(addSpan(nil, span{10, 20}), span{30, 40})
	got := gaps(spans, 0, 50)
	want := []span{{0, 10}, {20, 30}, {40, 50}}
	if len(got) != len(want) {
		t.Fatalf("gaps = %v", got)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("gaps = %v, want %v", got, want)
		}
	}
	if g := gaps(addSpan(spans, span{15, 35}), 12, 38); len(g) != 0 {
		t.Errorf("covered: %v", g)
	}
}
