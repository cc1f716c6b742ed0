// Package records owns what a run writes into its directory as it goes, and reading it
// back: the record types (Op, one line of ops.jsonl; Event and its types, one line of
// events.jsonl), the JSONL writer that appends each record as it arrives, Load, which reads
// a run directory back tolerantly (a torn last line is skipped and counted), and the names
// of the files in a run directory.
//
// It depends on the standard library only, so that the agent, the workloads, the faults and
// the systems write records without pulling in the analysis (package results: plots,
// linearizability, reports).
package records
