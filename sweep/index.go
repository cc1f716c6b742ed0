package sweep

import (
	"bytes"
	"html/template"
	"path/filepath"
	"time"

	"github.com/dtlab/dt/records"
)

var indexTmpl = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>sweep {{.Name}}</title>
<style>
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f3f3f3}.failed{color:#b00}.plots img{max-width:100%;width:780px;margin:0.5em 0}
code{background:#f6f6f6;padding:0 3px}
</style></head><body>
<h1>sweep {{.Name}}</h1>
<p>{{.Done}} of {{.Total}} runs finished ({{.Failed}} failed). Generated {{.Generated}}.
Data: <a href="sweep.csv">sweep.csv</a> (one row per run), <a href="sweep.yaml">sweep.yaml</a>, <a href="sweep-state.jsonl">sweep-state.jsonl</a>.</p>
<div class="plots">{{range .Plots}}<div><a href="plots/{{.Name}}.svg"><img src="plots/{{.Name}}.png" alt="{{.Title}}"></a></div>{{end}}</div>
<h2>Runs</h2>
<table><tr><th>run</th>{{range .Params}}<th>{{.}}</th>{{end}}<th>seed</th><th>status</th><th>seconds</th><th>report</th></tr>
{{range .Rows}}<tr><td>{{.Name}}</td>{{range .Params}}<td>{{.}}</td>{{end}}<td>{{.Seed}}</td>
<td{{if .Failed}} class="failed" title="{{.Error}}"{{end}}>{{.Status}}</td><td>{{printf "%.1f" .Seconds}}</td>
<td>{{if .Report}}<a href="{{.Report}}">report</a>{{end}}</td></tr>
{{end}}</table>
</body></html>
`))

type indexRow struct {
	Name, Status, Error, Report string
	Params                      []string
	Seed                        int64
	Seconds                     float64
	Failed                      bool
}

// writeIndex writes index.html: the plots and a table of the finished runs.
func (d *Dir) writeIndex(rows []Row, plots []PlotFile) error {
	data := struct {
		Name, Generated     string
		Done, Total, Failed int
		Plots               []PlotFile
		Params              []string
		Rows                []indexRow
	}{Name: d.Sweep.Name, Generated: time.Now().UTC().Format(time.RFC3339), Done: len(rows),
		Total: len(d.Sweep.Points) * d.Sweep.Repeats, Plots: plots, Params: d.Sweep.AxisNames()}
	for _, r := range rows {
		ir := indexRow{Name: r.Run.Name(), Status: r.Status, Error: r.Error, Seed: r.Run.Seed, Seconds: r.Seconds,
			Failed: r.Status != StatusOK}
		if ir.Failed {
			data.Failed++
		}
		for _, a := range d.Sweep.Axes {
			v, _ := r.Run.Point.Get(a.Name)
			ir.Params = append(ir.Params, FormatValue(v))
		}
		if r.RunDir != "" && !filepath.IsAbs(r.RunDir) {
			ir.Report = filepath.ToSlash(filepath.Join(r.RunDir, records.ReportFile))
		}
		data.Rows = append(data.Rows, ir)
	}
	var b bytes.Buffer
	if err := indexTmpl.Execute(&b, data); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(d.Path, FileIndex), b.Bytes())
}
