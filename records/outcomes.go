package records

// Fault-action events (EventFaultAction) whose Action is one of these say what a fault
// did or what became of its targets, not only that a step ran; the summary lists them
// under their fault.
const (
	ActionVerified   = "verified"    // the effect was checked in place: its measurement (Detail)
	ActionMemberExit = "member-exit" // a member's process ended on its own while the fault was in place
	ActionDiscard    = "discard"     // a power loss discarded what was not fsynced: what went
	ActionCorrupt    = "corrupt"     // a file was damaged: which, where, how
	ActionOutcome    = "outcome"     // what became of a member restarted after the fault
)

// OutcomeActions lists them.
var OutcomeActions = []string{ActionVerified, ActionMemberExit, ActionDiscard, ActionCorrupt, ActionOutcome}
