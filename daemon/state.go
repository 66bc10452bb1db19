package daemon

import "github.com/workcell/workcell/api"

// action is something a user asks of a profile.
type action string

const (
	actStart action = "start"
	actStop  action = "stop"
	actOff   action = "off"
	actOn    action = "on"
	actExec  action = "exec"
	// lock from running or paused stops the profile first.
	actLock   action = "lock"
	actUnlock action = "unlock"
)

// transitions is the profile state machine: from a state, an action
// leads to a state. A missing entry is a conflict.
var transitions = map[api.State]map[action]api.State{
	api.StateLocked:  {actUnlock: api.StateStopped, actLock: api.StateLocked},
	api.StateStopped: {actStart: api.StateRunning, actLock: api.StateLocked, actUnlock: api.StateStopped},
	api.StateRunning: {actStop: api.StateStopped, actOff: api.StatePaused, actOn: api.StateRunning, actExec: api.StateRunning, actLock: api.StateLocked, actUnlock: api.StateRunning},
	api.StatePaused:  {actStop: api.StateStopped, actOn: api.StateRunning, actOff: api.StatePaused, actLock: api.StateLocked, actUnlock: api.StatePaused},
}

// next returns the state that act leads to from st, or a conflict error
// that says why the action is not possible now.
func next(name string, st api.State, act action) (api.State, error) {
	if to, ok := transitions[st][act]; ok {
		return to, nil
	}
	switch {
	case act == actStart && (st == api.StateRunning || st == api.StatePaused):
		return st, api.Errorf(api.ErrConflict, "profile %s is already %s", name, st)
	case act == actExec && st == api.StatePaused:
		return st, api.Errorf(api.ErrConflict, "profile %s is paused (work mode off): turn it on first", name)
	case st == api.StateLocked:
		return st, api.Errorf(api.ErrConflict, "cannot %s profile %s: it is locked: unlock it first", act, name)
	}
	return st, api.Errorf(api.ErrConflict, "cannot %s profile %s: it is %s", act, name, st)
}
