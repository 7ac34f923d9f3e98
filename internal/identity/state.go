package identity

import "fmt"

// State is an identity's lifecycle state.
type State string

const (
	// None is the state of an identity that does not exist yet.
	None      State = ""
	Pending   State = "pending"
	Active    State = "active"
	Suspended State = "suspended"
	Departed  State = "departed"
)

// transitions is the whole lifecycle state machine: for each event type, the
// states it may start from and the state it leads to. Anything not listed is
// an illegal transition.
//
//	joiner:  none|departed -> pending (future start) or active; a joiner on
//	         a departed identity is a rehire
//	mover:   pending|active|suspended -> same state
//	leaver:  pending|active|suspended -> departed
//	suspend: active -> suspended
//	resume:  suspended -> active
var transitions = map[EventType]map[State]State{
	Joiner:  {None: Active, Departed: Active},
	Mover:   {Pending: Pending, Active: Active, Suspended: Suspended},
	Leaver:  {Pending: Departed, Active: Departed, Suspended: Departed},
	Suspend: {Active: Suspended},
	Resume:  {Suspended: Active},
}

// Transition returns the state an identity in state from moves to when ev
// happens, or a Conflict error naming both when the transition is not
// allowed. A joiner whose start lies in the future leads to Pending; the
// caller says so with future.
func Transition(from State, ev EventType, future bool) (State, error) {
	next, ok := transitions[ev]
	if !ok {
		return "", FieldError("type", "unknown event type %q (want one of %v)", ev, EventTypes)
	}
	to, ok := next[from]
	if !ok {
		return "", &Error{Code: Conflict, Field: "type", Message: fmt.Sprintf("illegal transition: %s is not allowed for an identity that is %s", ev, describe(from))}
	}
	if ev == Joiner && future {
		to = Pending
	}
	return to, nil
}

// Activate is the transition of a pending identity whose start date arrived.
func Activate(from State) (State, error) {
	if from != Pending {
		return "", Errorf(Conflict, "illegal transition: only a pending identity can start, this one is %s", describe(from))
	}
	return Active, nil
}

func describe(s State) string {
	if s == None {
		return "unknown (no such identity)"
	}
	return string(s)
}
