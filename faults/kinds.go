package faults

import (
	"context"
	"fmt"
	"time"
)

// The positional faults of `dt run` (reckon's, plus pause and the link-degrading ones),
// each a timeline of steps over a run of length T: one mechanism for every fault.
func init() {
	third := func(p Params) (*Duration, Duration) { return at(p.Duration / 3), Duration(p.Duration / 3) }
	for _, f := range []builtin{
		{name: "none", describe: "no fault: a baseline", from: 0, to: 1,
			steps: func(Params) []Step { return nil }},
		{name: "leader", describe: "kill the leader at T/2; it is not restarted", from: 0.5, to: 1,
			steps: func(p Params) []Step {
				return []Step{{ID: "leader", Action: "kill", Targets: []string{"leader"}, At: at(p.Duration / 2)}}
			}},
		{name: "leader-recovery", describe: "kill the leader at T/3, restart it (same data dir) at 2T/3",
			steps: func(p Params) []Step {
				a, d := third(p)
				return []Step{{ID: "leader-recovery", Action: "kill", Targets: []string{"leader"}, At: a, For: d}}
			}},
		{name: "partial-partition", describe: "cut the leader from one follower (both ways) from T/3 to 2T/3",
			steps: func(p Params) []Step {
				a, d := third(p)
				return []Step{{ID: "partial-partition", Action: "partition", Groups: [][]string{{"leader"}, {"follower"}}, At: a, For: d}}
			}},
		{name: "intermittent-partial", describe: "from T/3 to 2T/3, every --mtbf s toggle a cut between the leader and one follower; healed at the end",
			steps: func(p Params) []Step {
				a, _ := third(p)
				return []Step{{ID: "intermittent-partial", Action: "partition", Groups: [][]string{{"leader"}, {"follower"}}, At: a,
					For: Duration(p.MTBF), Every: Duration(2 * p.MTBF), Until: Duration(2 * p.Duration / 3)}}
			}},
		{name: "intermittent-full", describe: "from T/3 to 2T/3, every --mtbf s toggle a cut of one follower from every other node; healed at the end",
			steps: func(p Params) []Step {
				a, _ := third(p)
				return []Step{{ID: "intermittent-full", Action: "isolate", Targets: []string{"follower"}, At: a,
					For: Duration(p.MTBF), Every: Duration(2 * p.MTBF), Until: Duration(2 * p.Duration / 3)}}
			}},
		{name: "kill-n", describe: "kill --kill-n members at T/2 (--kill-target leader|follower|any); not restarted", from: 0.5, to: 1,
			steps: func(p Params) []Step {
				var targets []string
				switch p.KillTarget {
				case "leader":
					targets = []string{"leader"}
					if p.KillN > 1 {
						targets = append(targets, fmt.Sprintf("followers(%d)", p.KillN-1))
					}
				case "follower":
					targets = []string{fmt.Sprintf("followers(%d)", p.KillN)}
				default:
					targets = []string{fmt.Sprintf("random(%d)", p.KillN)}
				}
				return []Step{{ID: "kill-n", Action: "kill", Targets: targets, At: at(p.Duration / 2)}}
			}},
		{name: "pause-leader", describe: "SIGSTOP the leader at T/3, SIGCONT at 2T/3",
			steps: func(p Params) []Step {
				a, d := third(p)
				return []Step{{ID: "pause-leader", Action: "pause", Targets: []string{"leader"}, At: a, For: d}}
			}},
	} {
		if f.to == 0 {
			f.from, f.to = 1.0/3, 2.0/3
		}
		RegisterFault(f)
	}
}

func at(d time.Duration) *Duration {
	v := Duration(d)
	return &v
}

// builtin is a named fault defined by its timeline.
type builtin struct {
	name, describe string
	from, to       float64 // the active window, as fractions of T
	steps          func(p Params) []Step
}

func (f builtin) Name() string          { return f.name }
func (f builtin) Describe() string      { return f.describe }
func (f builtin) Steps(p Params) []Step { return f.steps(p) }
func (f builtin) Run(ctx context.Context, env Env, p Params) error {
	return RunTimeline(ctx, env, f.steps(p), p.Duration)
}

// Window is where the fault acts in a run of p.Duration.
func (f builtin) Window(p Params) (from, to time.Duration) {
	return time.Duration(f.from * float64(p.Duration)), time.Duration(f.to * float64(p.Duration))
}
