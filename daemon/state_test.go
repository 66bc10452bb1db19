package daemon

import (
	"errors"
	"testing"

	"github.com/workcell/workcell/api"
)

func TestStateMachine(t *testing.T) {
	states := []api.State{api.StateLocked, api.StateStopped, api.StateRunning, api.StatePaused}
	acts := []action{actStart, actStop, actOff, actOn, actExec, actLock, actUnlock}
	// Every (state, action) pair, with the state it must lead to; "" is a
	// conflict.
	want := map[api.State]map[action]api.State{
		api.StateLocked:  {actUnlock: api.StateStopped, actLock: api.StateLocked},
		api.StateStopped: {actStart: api.StateRunning, actLock: api.StateLocked, actUnlock: api.StateStopped},
		api.StateRunning: {actStop: api.StateStopped, actOff: api.StatePaused, actOn: api.StateRunning, actExec: api.StateRunning, actLock: api.StateLocked, actUnlock: api.StateRunning},
		api.StatePaused:  {actStop: api.StateStopped, actOn: api.StateRunning, actOff: api.StatePaused, actLock: api.StateLocked, actUnlock: api.StatePaused},
	}
	for _, st := range states {
		for _, act := range acts {
			to, err := next("work", st, act)
			exp, ok := want[st][act]
			switch {
			case ok && err != nil:
				t.Errorf("%s from %s: unexpected error %v", act, st, err)
			case ok && to != exp:
				t.Errorf("%s from %s: got %s, want %s", act, st, to, exp)
			case !ok && err == nil:
				t.Errorf("%s from %s: got %s, want a conflict", act, st, to)
			case !ok && !errors.Is(err, api.ErrConflict):
				t.Errorf("%s from %s: error %v is not a conflict", act, st, err)
			}
		}
	}
}

func TestStateMachineMessages(t *testing.T) {
	for _, tc := range []struct {
		st   api.State
		act  action
		want string
	}{
		{api.StateRunning, actStart, "profile work is already running"},
		{api.StatePaused, actStart, "profile work is already paused"},
		{api.StatePaused, actExec, "profile work is paused (work mode off): turn it on first"},
		{api.StateStopped, actStop, "cannot stop profile work: it is stopped"},
		{api.StateLocked, actStart, "cannot start profile work: it is locked: unlock it first"},
		{api.StateLocked, actExec, "cannot exec profile work: it is locked: unlock it first"},
	} {
		_, err := next("work", tc.st, tc.act)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s from %s: error %v, want %q", tc.act, tc.st, err, tc.want)
		}
	}
}
