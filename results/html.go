package results

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dtlab/dt/records"
)

// maxEventRows bounds the event timeline in the report; events.jsonl has them all.
const maxEventRows = 5000

type reportPlot struct {
	Name, Caption    string
	PNG              template.URL // data: URI, so the report needs no other file
	PNGFile, SVGFile string
}

type eventRow struct {
	T, Type, Class, Text string
}

type fileLink struct {
	Name, Href, Size string
}

type windowRow struct {
	Name string
	W    *WindowStats
}

type reportData struct {
	S          *Summary
	Plots      []reportPlot
	Windows    []windowRow
	Events     []eventRow
	EventsMore int
	Config     string
	Files      []fileLink
	Logs       []fileLink
	LogsMore   int
}

var reportFuncs = template.FuncMap{
	"ms": func(l *Latency, which string) string {
		if l == nil {
			return "–"
		}
		switch which {
		case "p50":
			return fmtMS(l.P50)
		case "p99":
			return fmtMS(l.P99)
		}
		return fmtMS(l.Max)
	},
	"sec": func(v float64) string { return fmt.Sprintf("%.3f", v) },
	"secp": func(v *float64) string {
		if v == nil {
			return "never"
		}
		return fmt.Sprintf("%.1f s", *v)
	},
	"rate": func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"spans": func(sp []Interval) string {
		var parts []string
		for _, s := range sp {
			parts = append(parts, fmt.Sprintf("%.2f–%.2f", s.Start, s.End))
		}
		return strings.Join(parts, ", ")
	},
	"join": func(s []string) string { return strings.Join(s, ", ") },
	"linclass": func(r string) string {
		switch r {
		case LinOK:
			return "good"
		case LinViolation:
			return "bad"
		}
		return "warn"
	},
	"faultend": func(f FaultWindow) string {
		if f.End == nil {
			return "never healed"
		}
		return fmt.Sprintf("%.3f", *f.End)
	},
}

var reportTmpl = template.Must(template.New("report").Funcs(reportFuncs).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dt report: {{.S.Title}}</title>
<style>
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1320px;padding:16px 24px;color:#1d1d1f;background:#fff;font-size:14px}
h1{font-size:22px;margin:4px 0}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#555;margin-bottom:12px}code,pre,td.n{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:130px;background:#fafafa}
.card .v{font-size:20px;font-weight:bold}.card .k{color:#666;font-size:12px}
.good{background:#e6f4ea;border-color:#9bd3ae}.bad{background:#fde8e6;border-color:#f1a19a}.warn{background:#fff4e0;border-color:#f0c47a}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right}
figure{margin:14px 0}figure img{width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;font-size:13px}
tr.fault td{background:#fdecea}tr.action td{background:#fff6e8}tr.leader td{background:#f1ecfa}tr.error td{background:#fde8e6;font-weight:bold}
pre{background:#f7f7f7;border:1px solid #e5e5e5;padding:8px;overflow:auto;max-height:420px}
.note{color:#555;font-size:13px}
</style></head><body>
<h1>{{.S.Title}}</h1>
<div class="sub">run <code>{{.S.RunDir}}</code> · analysed {{.S.GeneratedAt}} · workload {{sec .S.Workload.Start}}–{{sec .S.Workload.End}} s</div>
{{if .S.SkippedRecords}}<div class="card warn">{{.S.SkippedRecords}} record(s) could not be read and were skipped (a half-written line from a crash, usually); see the end of this page.</div>{{end}}
{{range .S.Warnings}}<div class="card warn">{{.}}</div>{{end}}
<div class="cards">
<div class="card"><div class="v">{{.S.Ops.Total}}</div><div class="k">operations ({{.S.Ops.OK}} ok, {{.S.Ops.Failed}} failed, {{.S.Ops.Overload}} not sent)</div></div>
<div class="card"><div class="v">{{printf "%.2f s" .S.UnavailabilityS}}</div><div class="k">longest time without a success{{with .S.Unavailable}} ({{printf "%.2f–%.2f s" .Start .End}}){{end}}</div></div>
<div class="card"><div class="v">{{secp .S.RecoveryS.FromFaultStart}}</div><div class="k">recovery from fault start</div></div>
<div class="card"><div class="v">{{secp .S.RecoveryS.FromHeal}}</div><div class="k">recovery from heal</div></div>
<div class="card"><div class="v">{{.S.LeaderChanges}}</div><div class="k">leader changes (max term {{.S.MaxTerm}})</div></div>
<div class="card {{linclass .S.Linearizability.Result}}"><div class="v">{{.S.Linearizability.Result}}</div><div class="k">linearizability ({{.S.Linearizability.KeysChecked}}/{{.S.Linearizability.Keys}} keys, {{printf "%.1f s" .S.Linearizability.DurationS}})</div></div>
</div>

<h2>Throughput and latency by window</h2>
<table><tr><th>window</th><th>spans (s)</th><th>duration (s)</th><th>ok</th><th>failed</th><th>not sent</th><th>ok ops/s</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>
{{range .Windows}}<tr><td>{{.Name}}</td>{{with .W}}<td class="n">{{spans .Spans}}</td><td class="n">{{sec .DurationS}}</td><td class="n">{{.OK}}</td><td class="n">{{.Failed}}</td><td class="n">{{.Overload}}</td><td class="n">{{rate .ThroughputOpsS}}</td><td class="n">{{ms .LatencyMS "p50"}}</td><td class="n">{{ms .LatencyMS "p99"}}</td><td class="n">{{ms .LatencyMS "max"}}</td>{{else}}<td colspan="9" class="note">no such window</td>{{end}}</tr>
{{end}}</table>
<p class="note">Throughput counts successful operations by completion time. Latency runs from an operation's scheduled start to its reply (client queueing included) and is counted in the window it was scheduled in. Pre-fault throughput {{rate .S.PreFaultThroughput}} ops/s; recovery is the first 1 s bucket back at ≥ 90 % of it.{{with .S.RecoveryS.Note}} {{.}}.{{end}}</p>

{{range .Plots}}<figure id="{{.Name}}"><img alt="{{.Caption}}" src="{{.PNG}}"><figcaption>{{.Caption}} Files: <a href="{{.PNGFile}}">{{.PNGFile}}</a>, <a href="{{.SVGFile}}">{{.SVGFile}}</a>.</figcaption></figure>
{{end}}

<h2>Faults</h2>
{{if .S.Faults}}<table><tr><th>fault</th><th>targets</th><th>start (s)</th><th>end (s)</th><th>duration (s)</th><th>actions</th><th>recovery from start</th><th>recovery from heal</th></tr>
{{range .S.Faults}}<tr><td>{{.Name}}</td><td>{{join .Targets}}</td><td class="n">{{sec .Start}}</td><td class="n">{{faultend .}}</td><td class="n">{{sec .DurationS}}</td><td class="n">{{len .Actions}}</td><td class="n">{{secp .RecoveryS.FromFaultStart}}</td><td class="n">{{secp .RecoveryS.FromHeal}}</td></tr>
{{end}}</table>{{else}}<p class="note">No fault was injected.</p>{{end}}
{{with .S.StepErrors}}<h2>Step errors</h2><ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .S.Probes}}<h2>Probes</h2>
<p>{{.Total}} probe(s) called after fault steps, {{.Failed}} failed.</p>
{{if .Failures}}<table><tr><th>t (s)</th><th>after step</th><th>from</th><th>url</th><th>answer</th></tr>
{{range .Failures}}<tr class="error"><td class="n">{{sec .T}}</td><td>{{.Step}}</td><td>{{.From}}</td><td>{{.URL}}</td><td>{{if .Error}}{{.Error}}{{else}}status {{.Status}}{{end}}</td></tr>
{{end}}</table>{{end}}{{end}}

<h2>Linearizability</h2>
<div class="card {{linclass .S.Linearizability.Result}}" style="display:inline-block"><b>{{.S.Linearizability.Result}}</b></div>
<p>{{.S.Linearizability.Detail}}</p>
{{with .S.Linearizability.Violations}}<table><tr><th>violation</th><th>found</th><th>keys</th><th>first: key</th><th>t (s)</th><th>what it shows</th><th>its operations</th></tr>
{{range .}}<tr class="error"><td>{{.Kind}}</td><td class="n">{{.Instances}}</td><td class="n">{{.Keys}}</td><td><code>{{.Key}}</code></td><td class="n">{{sec .T}}</td><td>{{.Text}}</td><td>{{range .Ops}}<code>{{.}}</code><br>{{end}}</td></tr>
{{end}}</table>{{end}}
<p class="note">{{.S.Linearizability.Ops}} read/write/cas records; {{.S.Linearizability.OpsChecked}} operations decided in {{.S.Linearizability.Segments}} segment(s) over {{.S.Linearizability.Keys}} key(s); {{.S.Linearizability.IndeterminateWrites}} indeterminate writes, {{.S.Linearizability.IndeterminateCAS}} indeterminate cas; {{printf "%.2f" .S.Linearizability.DurationS}} s.
{{with .S.Linearizability.Visualization}} Porcupine's visualisation of the violation: <a href="{{.}}">{{.}}</a>.{{end}}</p>

<h2>Event timeline</h2>
<table><tr><th>t (s)</th><th>event</th><th>details</th></tr>
{{range .Events}}<tr class="{{.Class}}"><td class="n">{{.T}}</td><td>{{.Type}}</td><td>{{.Text}}</td></tr>
{{end}}</table>
{{if .EventsMore}}<p class="note">{{.EventsMore}} more events in events.jsonl.</p>{{end}}

<h2>Configuration</h2>
<pre>{{.Config}}</pre>

<h2>Raw files</h2>
<ul>{{range .Files}}<li><a href="{{.Href}}">{{.Name}}</a> <span class="note">{{.Size}}</span></li>{{end}}</ul>
{{if .Logs}}<p>Node logs:</p><ul>{{range .Logs}}<li><a href="{{.Href}}">{{.Name}}</a> <span class="note">{{.Size}}</span></li>{{end}}</ul>{{if .LogsMore}}<p class="note">{{.LogsMore}} more files in logs/.</p>{{end}}{{end}}
{{if .S.Skipped}}<h2>Skipped records</h2><table><tr><th>file</th><th>line</th><th>error</th></tr>
{{range .S.Skipped}}<tr><td>{{.File}}</td><td class="n">{{.Line}}</td><td>{{.Error}}</td></tr>{{end}}</table>{{end}}
<p class="note">Written by dt report. Times are seconds from the run's start.</p>
</body></html>
`))

// writeReport writes report.html: one file with everything inlined (CSS, plots as data:
// URIs) and relative links to the raw files beside it.
func writeReport(w io.Writer, run *records.Run, s *Summary, plots []plotFile) error {
	d := reportData{S: s}
	for _, p := range plots {
		d.Plots = append(d.Plots, reportPlot{
			Name: p.name, Caption: p.caption,
			PNG:     template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(p.png)),
			PNGFile: p.name + ".png", SVGFile: p.name + ".svg",
		})
	}
	d.Windows = []windowRow{{"before", s.Windows.Before}, {"during", s.Windows.During}, {"after", s.Windows.After}, {"overall", s.Windows.Overall}}
	for i, ev := range run.Events {
		if i == maxEventRows {
			d.EventsMore = len(run.Events) - i
			break
		}
		d.Events = append(d.Events, eventRowOf(ev))
	}
	if run.Config != nil {
		b, err := json.MarshalIndent(run.Config, "", "  ")
		if err == nil {
			d.Config = string(b)
		}
	} else {
		d.Config = "(no config.json)"
	}
	names := []string{records.ConfigFile, records.OpsFile, records.EventsFile, records.SummaryFile}
	names = append(names, s.Files...)
	seen := map[string]bool{records.ReportFile: true}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		if st, err := os.Stat(filepath.Join(run.Dir, n)); err == nil {
			d.Files = append(d.Files, fileLink{Name: n, Href: n, Size: humanSize(st.Size())})
		} else if n == records.SummaryFile {
			d.Files = append(d.Files, fileLink{Name: n, Href: n})
		}
	}
	logs := filepath.Join(run.Dir, records.LogsDir)
	_ = filepath.WalkDir(logs, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if len(d.Logs) >= 200 {
			d.LogsMore++
			return nil
		}
		rel, _ := filepath.Rel(run.Dir, path)
		size := ""
		if info, err := e.Info(); err == nil {
			size = humanSize(info.Size())
		}
		d.Logs = append(d.Logs, fileLink{Name: rel, Href: filepath.ToSlash(rel), Size: size})
		return nil
	})
	sort.Slice(d.Logs, func(i, j int) bool { return d.Logs[i].Name < d.Logs[j].Name })
	if err := reportTmpl.Execute(w, d); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

func eventRowOf(ev records.Event) eventRow {
	r := eventRow{T: fmt.Sprintf("%.3f", ev.T), Type: ev.Type}
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+v)
		}
	}
	add("fault ", ev.Fault)
	add("action ", ev.Action)
	if len(ev.Targets) > 0 {
		add("targets ", strings.Join(ev.Targets, ", "))
	}
	add("node ", ev.Node)
	add("leader ", ev.Leader)
	if ev.Term > 0 {
		add("term ", fmt.Sprint(ev.Term))
	}
	add("", ev.Detail)
	r.Text = strings.Join(parts, " · ")
	switch ev.Type {
	case records.EventFaultStart, records.EventFaultEnd:
		r.Class = "fault"
	case records.EventFaultAction:
		r.Class = "action"
	case records.EventLeader:
		r.Class = "leader"
	case records.EventError:
		r.Class = "error"
	case records.EventProbe:
		r.Class = "action"
		if strings.Contains(ev.Detail, `"ok":false`) {
			r.Class = "error"
		}
	}
	return r
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
