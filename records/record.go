package records

// ResultOK is the Result of an operation that succeeded. Any other Result is a failure
// and holds the error text.
const ResultOK = "ok"

// ResultOverload is the Result of an operation that was due but never sent because the
// client already had --max-inflight operations outstanding. It certainly did not happen.
const ResultOverload = "overload: max-inflight reached, not sent"

// Op kinds.
const (
	KindWrite = "write"
	KindRead  = "read"
	// KindCAS is a compare-and-set: put Value if the key holds Expected, atomically.
	KindCAS = "cas"
)

// Op is one client operation, one line of ops.jsonl. Times are seconds from the run's start.
//
// Expected, Swapped and Current are a cas's own fields; a line without them (any line of a
// run from before cas existed) decodes with their zero values, which is what a read or
// write has.
type Op struct {
	Client string `json:"client"`
	Kind   string `json:"kind"`
	Key    string `json:"key"`
	// Value is, for a write, the unique id of the value written; for a read, the id read
	// ("" = absent); for a cas, the unique id of the new value.
	Value string `json:"value,omitempty"`
	// Expected is the value id a cas compared the key with ("" = the key is absent).
	Expected string `json:"expected,omitempty"`
	// Swapped says a successful cas found Expected and put Value. A successful cas that
	// did not swap found another value: Current, when the system read it in the same
	// atomic step ("" = absent), nil when the system does not say.
	Swapped       bool    `json:"swapped,omitempty"`
	Current       *string `json:"current,omitempty"`
	ExpectedStart float64 `json:"expected_start"` // when the open-loop schedule said to send it
	Submitted     float64 `json:"submitted"`      // when it was actually sent
	Completed     float64 `json:"completed"`      // when the reply (or error) came back
	Result        string  `json:"result"`         // ResultOK or the error text
	Target        string  `json:"target"`         // endpoint the client sent it to
}

// OK reports whether the operation succeeded.
func (o Op) OK() bool { return o.Result == ResultOK }

// Event types written to events.jsonl.
const (
	EventRunStart      = "run-start"
	EventClusterReady  = "cluster-ready"
	EventWorkloadStart = "workload-start"
	EventWorkloadEnd   = "workload-end"
	EventFaultStart    = "fault-start"  // a fault window opens (Fault, Targets)
	EventFaultAction   = "fault-action" // one step inside a window (Action: kill, partition, heal, pause, ...)
	EventFaultEnd      = "fault-end"    // the window closes; everything the fault did is undone
	EventLeader        = "leader"       // the observed leader changed (Leader, Term)
	EventTerm          = "term"         // a member's term rose (Node, Term)
	EventCommand       = "command"      // a command typed at the debug prompt (Detail)
	EventProbe         = "probe"        // a step's probe answered (Fault: the step, Node: from where; Detail: JSON outcome)
	EventError         = "error"
	EventRunEnd        = "run-end"
)

// Event is one line of events.jsonl. T is seconds from the run's start.
type Event struct {
	T       float64  `json:"t"`
	Type    string   `json:"type"`
	Fault   string   `json:"fault,omitempty"`
	Action  string   `json:"action,omitempty"`
	Targets []string `json:"targets,omitempty"`
	Node    string   `json:"node,omitempty"`
	Leader  string   `json:"leader,omitempty"`
	Term    uint64   `json:"term,omitempty"`
	Detail  string   `json:"detail,omitempty"`
}
