package results

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

func analyzed(t *testing.T, s synth) (string, *Summary) {
	t.Helper()
	dir := runDir(t)
	s.write(t, dir)
	sum, err := Analyze(dir, Options{CheckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return dir, sum
}

// imageStats decodes a PNG and returns its size, its number of distinct colours and the
// fraction of pixels that are not (near) white.
func imageStats(t *testing.T, data []byte) (image.Rectangle, int, float64) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode png: %v", err)
	}
	b := img.Bounds()
	colours := map[[3]uint32]bool{}
	ink := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if r>>8 < 240 || g>>8 < 240 || bl>>8 < 240 {
				ink++
			}
		}
	}
	return b, len(colours), float64(ink) / float64(b.Dx()*b.Dy())
}

func TestPlotsAreNonTrivial(t *testing.T) {
	dir, _ := analyzed(t, leaderRun())
	for _, name := range []string{records.PlotThroughput, records.PlotLatency, records.PlotLatencyCDF} {
		pngData, err := os.ReadFile(filepath.Join(dir, name+".png"))
		if err != nil {
			t.Fatal(err)
		}
		if len(pngData) < 20<<10 {
			t.Errorf("%s.png is only %d bytes", name, len(pngData))
		}
		b, colours, ink := imageStats(t, pngData)
		t.Logf("%s.png: %v, %d colours, %.1f%% ink", name, b.Size(), colours, ink*100)
		if b.Dx() < 1000 || b.Dy() < 400 {
			t.Errorf("%s.png is %v", name, b.Size())
		}
		if colours < 20 || ink < 0.02 {
			t.Errorf("%s.png looks blank: %d colours, %.2f%% ink", name, colours, ink*100)
		}

		svgData, err := os.ReadFile(filepath.Join(dir, name+".svg"))
		if err != nil {
			t.Fatal(err)
		}
		if len(svgData) < 10<<10 || !bytes.Contains(svgData, []byte("<svg")) {
			t.Errorf("%s.svg: %d bytes", name, len(svgData))
		}
		dec := xml.NewDecoder(bytes.NewReader(svgData))
		for {
			if _, err := dec.Token(); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("%s.svg is not well-formed XML: %v", name, err)
				}
				break
			}
		}
	}
}

var attrRE = regexp.MustCompile(`(?i)\b(src|href)\s*=\s*"([^"]*)"`)

func TestReportIsSelfContained(t *testing.T) {
	dir, sum := analyzed(t, leaderRun())
	b, err := os.ReadFile(filepath.Join(dir, records.ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	srcs, hrefs := 0, 0
	for _, m := range attrRE.FindAllStringSubmatch(html, -1) {
		attr, v := strings.ToLower(m[1]), m[2]
		switch {
		case attr == "src":
			srcs++
			if !strings.HasPrefix(v, "data:image/png;base64,") {
				t.Errorf("src %.60q is not embedded", v)
			}
		case strings.Contains(v, "://") || strings.HasPrefix(v, "//"):
			t.Errorf("href %q leaves the run directory", v)
		default:
			hrefs++
			if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(v))); err != nil {
				t.Errorf("href %q: %v", v, err)
			}
		}
	}
	if srcs != 3 || hrefs < 10 {
		t.Errorf("%d embedded images and %d links", srcs, hrefs)
	}
	for _, bad := range []string{"<script", "<link", "@import", "url("} {
		if strings.Contains(html, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	for _, want := range []string{
		sum.Title, "Throughput and latency by window", "fault-start", "targets s1", "leader s2 · term 3",
		"3.4.23", `href="ops.jsonl"`, `href="events.jsonl"`, `href="config.json"`, `href="timeseries_100ms.csv"`,
		`href="logs/s1.log"`, ">ok<",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (Debian package `chromium`, listed in .ci/apt-packages): skipping the headless rendering check")
	return ""
}

// screenshot renders page in headless Chromium with every host name unresolvable, so the
// page cannot fetch anything from the network, and returns the PNG and Chromium's log.
func screenshot(t *testing.T, page string, w, h int) ([]byte, string) {
	t.Helper()
	bin := chromium(t)
	tmp := t.TempDir()
	shot := filepath.Join(tmp, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	abs, _ := filepath.Abs(page)
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--user-data-dir="+filepath.Join(tmp, "profile"), "--host-resolver-rules=MAP * ~NOTFOUND",
		"--enable-logging=stderr", "--v=0", "--screenshot="+shot, "--window-size="+strconv.Itoa(w)+","+strconv.Itoa(h),
		"file://"+abs)
	cmd.Env = append(os.Environ(), "HOME="+tmp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	data, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, out)
	}
	return data, string(out)
}

func TestReportRendersInChromium(t *testing.T) {
	chromium(t)
	dir, _ := analyzed(t, leaderRun())
	data, log := screenshot(t, filepath.Join(dir, records.ReportFile), 1280, 2000)
	if strings.Contains(log, "net::ERR_") || strings.Contains(log, "Failed to load resource") {
		t.Errorf("chromium could not load something:\n%s", log)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	ink, plotBlue, shade := 0, 0, 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			if r < 240 || g < 240 || bl < 240 {
				ink++
			}
			if bl > r+60 && bl > g+30 { // the blue of the throughput line and latency points
				plotBlue++
			}
			if r > 230 && g > 190 && g < 225 && bl > 180 && bl < 220 { // fault-window shading
				shade++
			}
		}
	}
	frac := float64(ink) / float64(b.Dx()*b.Dy())
	t.Logf("screenshot %v: %.1f%% non-blank, %d blue plot pixels, %d shaded pixels", b.Size(), frac*100, plotBlue, shade)
	if b.Dx() != 1280 || b.Dy() != 2000 {
		t.Errorf("screenshot is %v", b.Size())
	}
	if frac < 0.10 {
		t.Errorf("only %.1f%% of the screenshot is not blank", frac*100)
	}
	if plotBlue < 3000 || shade < 3000 {
		t.Errorf("the embedded plots did not render: %d blue, %d shaded pixels", plotBlue, shade)
	}
}

func TestAnalyzeHalfWrittenLastLine(t *testing.T) {
	dir := runDir(t)
	s := leaderRun()
	s.write(t, dir)
	f, err := os.OpenFile(filepath.Join(dir, records.OpsFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"client":"c1","kind":"write","key":"2","value":"c1-99999","expected_st`)
	f.Close()
	sum, err := Analyze(dir, Options{CheckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sum.SkippedRecords != 1 || sum.Ops.Total != 6000 || sum.Linearizability.Result != LinOK {
		t.Errorf("skipped %d, ops %d, %s", sum.SkippedRecords, sum.Ops.Total, sum.Linearizability.Result)
	}
	if !strings.Contains(FormatSummary(sum), "1 unreadable record(s) skipped") {
		t.Errorf("summary does not say a record was skipped:\n%s", FormatSummary(sum))
	}
	html, err := os.ReadFile(filepath.Join(dir, records.ReportFile))
	if err != nil || !bytes.Contains(html, []byte("could not be read and were skipped")) {
		t.Errorf("report: %v", err)
	}
}

// A run that crashed inside the fault window: no fault-end, no workload-end, the fault
// never healed.
func TestAnalyzeCrashedRun(t *testing.T) {
	dir := runDir(t)
	s := leaderRun()
	ops := s.ops()
	var kept []records.Op
	for _, o := range ops {
		if o.Completed < 18 {
			kept = append(kept, o)
		}
	}
	var events []records.Event
	for _, e := range s.events() {
		if e.T < 18 {
			events = append(events, e)
		}
	}
	writeRun(t, dir, s.config(), kept, events)
	sum, err := Analyze(dir, Options{CheckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Faults) != 1 || sum.Faults[0].End != nil || sum.Windows.After != nil || sum.Windows.During == nil {
		t.Errorf("faults %+v, windows %+v", sum.Faults, sum.Windows)
	}
	if sum.RecoveryS.FromHeal != nil || sum.RecoveryS.FromFaultStart == nil || *sum.RecoveryS.FromFaultStart != 3 {
		t.Errorf("recovery %+v", sum.RecoveryS)
	}
	near(t, "workload end", sum.Workload.End, 18, 0.01)
	if !strings.Contains(FormatSummary(sum), "never healed") {
		t.Errorf("summary:\n%s", FormatSummary(sum))
	}
}

// A run that crashed before the workload: events only.
func TestAnalyzeRunWithoutOps(t *testing.T) {
	dir := runDir(t)
	writeRun(t, dir, nil, nil, []records.Event{{T: 0, Type: records.EventRunStart}, {T: 3, Type: records.EventError, Detail: "etcd did not start"}})
	os.Remove(filepath.Join(dir, records.OpsFile))
	sum, err := Analyze(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Ops.Total != 0 || sum.Linearizability.Result != LinOK || len(sum.Warnings) != 2 {
		t.Errorf("%+v", sum)
	}
	for _, f := range []string{records.ReportFile, records.SummaryFile, records.PlotThroughput + ".png", records.PlotLatency + ".svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestAnalyzeNoFault(t *testing.T) {
	s := leaderRun()
	s.faultStart, s.outageFrom, s.outageTo = 0, 0, 0
	_, sum := analyzed(t, s)
	w := sum.Windows
	if w.Before == nil || w.During != nil || w.After != nil || w.Overall == nil || sum.UnavailabilityS > 0.2 {
		t.Errorf("windows %+v, unavailable %v", w, sum.UnavailabilityS)
	}
	if sum.RecoveryS.FromFaultStart != nil || sum.RecoveryS.Note != "no fault" {
		t.Errorf("recovery %+v", sum.RecoveryS)
	}
	if !strings.HasPrefix(sum.Title, "etcd simple uniform none") {
		t.Errorf("title %q", sum.Title)
	}
}

// An intermittent fault toggles a cut inside its window; throughput drops only while cut.
func TestAnalyzeIntermittentFault(t *testing.T) {
	dir := runDir(t)
	s := leaderRun()
	s.faultStart, s.faultEnd, s.outageFrom, s.outageTo = 0, 0, 0, 0
	var ops []records.Op
	for _, o := range s.ops() {
		cut := false
		for c := 12.0; c < 20; c += 2 { // cut [12,13), [14,15), ...
			cut = cut || (o.Submitted >= c && o.Submitted < c+1)
		}
		if cut {
			o.Result, o.Completed = "context deadline exceeded", o.Submitted+0.3
			if o.Kind == records.KindRead {
				o.Value = ""
			}
		}
		ops = append(ops, o)
	}
	events := s.events()
	events = append(events, records.Event{T: 12, Type: records.EventFaultStart, Fault: "intermittent-full", Targets: []string{"s2"}})
	for c := 12.0; c < 20; c += 2 {
		events = append(events,
			records.Event{T: c, Type: records.EventFaultAction, Fault: "intermittent-full", Action: "cut", Targets: []string{"s2"}},
			records.Event{T: c + 1, Type: records.EventFaultAction, Fault: "intermittent-full", Action: "heal", Targets: []string{"s2"}})
	}
	events = append(events, records.Event{T: 20, Type: records.EventFaultEnd, Fault: "intermittent-full"},
		records.Event{T: 12.8, Type: records.EventLeader, Leader: "s3", Term: 3}, records.Event{T: 16.9, Type: records.EventLeader, Leader: "s1", Term: 5})
	cfg := s.config()
	cfg["fault"] = "intermittent-full"
	// Events in file order need not be sorted; records.Load sorts them.
	writeRun(t, dir, cfg, ops, events)
	sum, err := Analyze(dir, Options{CheckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := sum.Faults
	if len(f) != 1 || len(f[0].Actions) != 8 || f[0].DurationS != 8 {
		t.Fatalf("faults %+v", f)
	}
	spans := activeSpans(f[0], 20)
	if len(spans) != 4 || spans[0] != (Interval{12, 13}) || spans[3] != (Interval{18, 19}) {
		t.Errorf("active spans %v", spans)
	}
	near(t, "during throughput", sum.Windows.During.ThroughputOpsS, 100, 2)
	if sum.LeaderChanges != 2 || sum.MaxTerm != 5 {
		t.Errorf("leader changes %d, max term %d", sum.LeaderChanges, sum.MaxTerm)
	}
	if r := sum.RecoveryS.FromFaultStart; r == nil || *r != 1 {
		t.Errorf("recovery from start %v, want 1 (the first cut lasts 1 s)", fmtRecovery(r))
	}
}

func TestAnalyzeViolationThenReanalysis(t *testing.T) {
	dir := runDir(t)
	s := leaderRun()
	s.keys = 1
	ops := s.ops()
	idx, orig := -1, ""
	for i := range ops {
		if ops[i].Kind == records.KindRead && ops[i].OK() && ops[i].Submitted > 25 && ops[i].Value != "" {
			idx, orig = i, ops[i].Value
			ops[i].Value = "c0-0" // the very first write, long overwritten
			break
		}
	}
	writeRun(t, dir, s.config(), ops, s.events())
	sum, err := Analyze(dir, Options{CheckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Linearizability.Result != LinViolation || sum.Linearizability.Visualization != records.VisualizationFile {
		t.Fatalf("%+v", sum.Linearizability)
	}
	html, _ := os.ReadFile(filepath.Join(dir, records.ReportFile))
	if !bytes.Contains(html, []byte(`href="`+records.VisualizationFile+`"`)) {
		t.Error("report does not link the visualisation")
	}
	if !strings.Contains(FormatSummary(sum), "VIOLATION") {
		t.Errorf("summary:\n%s", FormatSummary(sum))
	}
	// Fixing the history and re-analysing removes the stale visualisation.
	ops[idx].Value = orig
	os.Remove(filepath.Join(dir, records.OpsFile))
	w, err := records.CreateJSONL(filepath.Join(dir, records.OpsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		w.Append(o)
	}
	w.Close()
	sum, err = Analyze(dir, Options{CheckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Linearizability.Result != LinOK {
		t.Fatalf("%+v", sum.Linearizability)
	}
	if _, err := os.Stat(filepath.Join(dir, records.VisualizationFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale visualisation left behind: %v", err)
	}
}

// A run with cas analysed offline (what dt report does): a healthy history checks ok and
// counts its cas; one with a double swap and a stale read is a violation in summary.json,
// report.html and the console summary, one line per kind, each naming its key and ops.
func TestAnalyzeCASRun(t *testing.T) {
	s := leaderRun()
	s.keys, s.casRatio = 2, 0.2
	_, sum := analyzed(t, s)
	if sum.Linearizability.Result != LinOK || sum.Ops.CAS < 1000 || sum.Ops.CASSwapped == 0 {
		t.Fatalf("healthy cas run: %+v %+v", sum.Ops, sum.Linearizability)
	}

	ops := s.ops()
	// Make a later cas swap from the value an earlier swapped cas replaced, and a late read
	// return an early value.
	var first *records.Op
	doubled, staled := false, false
	for i := range ops {
		o := &ops[i]
		switch {
		case o.Kind == records.KindCAS && o.Swapped && first == nil && o.Submitted > 5:
			first = o
		case !doubled && first != nil && o.Kind == records.KindCAS && o.OK() && o.Key == first.Key && o.Submitted > first.Completed+1:
			o.Expected, o.Swapped, o.Current = first.Expected, true, nil
			doubled = true
		case !staled && first != nil && o.Kind == records.KindRead && o.OK() && o.Key == first.Key && o.Submitted > 25:
			o.Value = first.Value
			staled = true
		}
	}
	if !doubled || !staled {
		t.Fatal("could not plant the violations")
	}
	dir := runDir(t)
	writeRun(t, dir, s.config(), ops, s.events())
	sum, err := Analyze(dir, Options{CheckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l := sum.Linearizability
	kinds := map[string]bool{}
	for _, v := range l.Violations {
		kinds[v.Kind] = true
	}
	if l.Result != LinViolation || !kinds[ViolationDoubleCAS] || !kinds[ViolationStaleRead] || l.Visualization == "" {
		t.Fatalf("%+v", l)
	}
	b, _ := os.ReadFile(filepath.Join(dir, records.SummaryFile))
	if !bytes.Contains(b, []byte(`"kind": "two cas swapped from one value"`)) {
		t.Errorf("summary.json lacks the violation kinds:\n%s", b)
	}
	html, _ := os.ReadFile(filepath.Join(dir, records.ReportFile))
	if !bytes.Contains(html, []byte("two cas swapped from one value")) || !bytes.Contains(html, []byte("cas(")) {
		t.Error("report.html does not list the violations")
	}
	out := FormatSummary(sum)
	t.Logf("\n%s", out)
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "  ") && strings.Contains(line, "first on key") {
			lines = append(lines, line)
		}
	}
	if len(lines) != len(l.Violations) || !strings.Contains(out, "linearizability: VIOLATION") {
		t.Fatalf("want one line per violation kind:\n%s", out)
	}
	for _, line := range lines {
		if !strings.Contains(line, `key "`+first.Key+`"`) || !strings.Contains(line, "(") {
			t.Errorf("line does not name the key and operations: %s", line)
		}
	}
}
