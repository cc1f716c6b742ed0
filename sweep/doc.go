// Package sweep runs scripted parameter sweeps: one experiment per point of a grid of
// `dt run` parameters, several times each, in one resumable directory, and aggregates
// the runs' summaries into sweep.csv and plots.
//
// It owns the sweep file format, the expansion of axes into points, the derivation of
// each run's seed, the sweep directory (a copy of the sweep file, its hash, and the
// append-only sweep-state.jsonl manifest), the check that a point left nothing on the
// host, and the aggregation. It runs experiments through the small Runner interface;
// Experiment is the real one (experiment.Run).
//
// A sweep file (strict YAML: an unknown key is an error naming its line and column):
//
//	name: partial-vs-rate            # directory results/sweeps/<name> (default: the file name)
//	base:                            # fixed: system, topology, workload, fault, any `dt run` flag
//	  system: etcd
//	  topology: simple
//	  workload: uniform
//	  fault: partial-partition
//	  duration: 30
//	axes:                            # varied, the first slowest; lists or ranges
//	  rate: [100, 1000, 10000]
//	  number-nodes: [3, 5]
//	  mtbf: {from: 0.5, to: 4, steps: 4, log: true}   # 4 values, evenly spaced on a log scale
//	  max-key: {from: 1, to: 100, step: 10, log: true} # ×10 each step: 1, 10, 100
//	  payload-size: {from: 10, to: 40, step: 10}       # 10, 20, 30, 40
//	zip:                             # axes that vary together (same length), not crosswise
//	  - [number-nodes, kill-n]
//	repeats: 3                       # runs per point (default 1)
//	seed: 42                         # every run's seed is derived from it, the point and the repeat
//	plots:                           # default: chosen from the axes
//	  - {x: rate, y: p99, by: number-nodes}
//
// Points are the Cartesian product of the axes (zip groups count as one axis). A run is a
// point and a repeat (1-based); its seed is Seed(base, point key, repeat), so adding a value
// to an axis leaves the seeds of the other points unchanged.
package sweep
