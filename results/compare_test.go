package results

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCompare(t *testing.T) {
	base := runDir(t)
	var dirs []string
	for i, mod := range []func(*synth){
		func(s *synth) {},
		func(s *synth) { s.rate = 100; s.outageTo = 16 },
		func(s *synth) { s.rate = 300; s.faultStart, s.faultEnd, s.outageFrom, s.outageTo = 8, 12, 8, 9 },
	} {
		s := leaderRun()
		s.seed = uint64(i + 1)
		mod(&s)
		d := filepath.Join(base, "run"+string(rune('a'+i)))
		s.write(t, d)
		dirs = append(dirs, d)
	}
	// the first run was analysed, so its verdict is known; the others were not
	if _, err := Analyze(dirs[0], Options{CheckTimeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(base, "cmp")
	var buf bytes.Buffer
	if err := CompareTo(&buf, dirs, out); err != nil {
		t.Fatal(err)
	}
	printed := buf.String()
	t.Log("\n" + printed)
	for _, want := range []string{"rate=200 ", "rate=100 ", "rate=300 ", "linearizability", "not checked", " ok "} {
		if !strings.Contains(printed, want) {
			t.Errorf("printed table lacks %q", want)
		}
	}
	rows := readCSV(t, filepath.Join(out, CompareTable))
	if len(rows) != 4 || rows[1][0] != "rate=200" || !strings.HasPrefix(rows[2][11], "4.0") {
		t.Errorf("table %v", rows)
	}
	series := readCSV(t, filepath.Join(out, CompareSeries))
	var zero []string
	for _, r := range series[1:] {
		if r[0] == "rate=100" && r[1] == "0" {
			zero = r
		}
	}
	if zero == nil || zero[2] != "0" { // nothing succeeds in the first second after the kill
		t.Errorf("rate=100 at t=0: %v", zero)
	}
	pngData, err := os.ReadFile(filepath.Join(out, ComparePlot+".png"))
	if err != nil {
		t.Fatal(err)
	}
	_, colours, ink := imageStats(t, pngData)
	if colours < 20 || ink < 0.02 {
		t.Errorf("compare.png looks blank: %d colours, %.2f%% ink", colours, ink*100)
	}
	if st, err := os.Stat(filepath.Join(out, ComparePlot+".svg")); err != nil || st.Size() < 10<<10 {
		t.Errorf("compare.svg: %v", err)
	}
}

func TestCompareErrors(t *testing.T) {
	if err := CompareTo(&bytes.Buffer{}, nil, t.TempDir()); err == nil {
		t.Error("no runs: no error")
	}
	if err := CompareTo(&bytes.Buffer{}, []string{filepath.Join(t.TempDir(), "missing")}, t.TempDir()); err == nil {
		t.Error("missing run: no error")
	}
}
