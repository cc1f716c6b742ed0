package records

import "time"

// Names of the files in a run directory (results/<system>-<topology>-<workload>-<fault>/<UTC>/)
// written while the run goes.
const (
	// ConfigFile is the run's parameters, the versions of everything involved and its time
	// zero (start_unix_nano), as one JSON object; written before the topology is built.
	ConfigFile = "config.json"
	// ScheduleFile is the whole fault timeline (package faults' ScheduleFile), written
	// before anything runs; --replay runs it again.
	ScheduleFile = "schedule.json"
	// OpsFile is the client operations, one Op per line, appended as they complete.
	OpsFile = "ops.jsonl"
	// EventsFile is what happened to the run, one Event per line, appended as it happens.
	EventsFile = "events.jsonl"
	// LogsDir is the directory of the members', agents' and processes' logs.
	LogsDir = "logs"
)

// Names of the files the analysis (package results) writes into a run directory, each
// written to a temporary name and renamed.
const (
	// SummaryFile is the analysis' summary (results.Summary) as JSON.
	SummaryFile = "summary.json"
	// ReportFile is the self-contained HTML page of the analysis.
	ReportFile = "report.html"
	// VisualizationFile is porcupine's visualisation of a linearizability violation, only
	// there when the last analysis found one.
	VisualizationFile = "linearizability.html"
)

// Names of the plots; each is written as <name>.png and <name>.svg.
const (
	// PlotThroughput is successful and failed operations per second over time.
	PlotThroughput = "throughput"
	// PlotLatency is the latency of every operation over time.
	PlotLatency = "latency"
	// PlotLatencyCDF is the latency CDF before, during and after the faults.
	PlotLatencyCDF = "latency_cdf"
)

// SeriesFile is the name of the CSV time series with buckets of width w:
// "timeseries_100ms.csv" for 100 ms.
func SeriesFile(w time.Duration) string { return "timeseries_" + w.String() + ".csv" }
