package binder

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

func TestLimitsValidate(t *testing.T) {
	if err := DefaultLimits.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, l := range map[string]Limits{
		"services":        {Services: 0, DeathLinks: 1, ProxiedObjects: 1},
		"death links":     {Services: 1, DeathLinks: -1, ProxiedObjects: 1},
		"proxied objects": {Services: 1, DeathLinks: 1, ProxiedObjects: 0},
	} {
		err := l.Validate()
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%+v: %v, want a refusal naming %s", l, err, name)
		}
	}
}

// TestLimitErrorNamesTheKnob: the message an app sees says the limit, what
// it counts, and the config field that raises it.
func TestLimitErrorNamesTheKnob(t *testing.T) {
	msg := (&LimitError{What: "registered services", Limit: 7, Knob: KnobServices}).Error()
	for _, want := range []string{"7", "registered services", "binder_max_services"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
}

// TestRefusalLogIsBounded: an app hammering a limit gets one log line a
// second per limit, and the next line counts the ones held back.
func TestRefusalLogIsBounded(t *testing.T) {
	var r refusalLog
	t0 := time.Unix(1000, 0)
	lines := 0
	for i := range 10000 {
		if ok, _ := r.allow(KnobServices, t0.Add(time.Duration(i)*time.Millisecond/10)); ok {
			lines++
		}
	}
	if lines != 1 {
		t.Errorf("%d lines for 10000 refusals within a second, want 1", lines)
	}
	if ok, _ := r.allow(KnobDeathLinks, t0); !ok {
		t.Error("another limit's first refusal was held back")
	}
	ok, held := r.allow(KnobServices, t0.Add(2*time.Second))
	if !ok || held != 9999 {
		t.Errorf("a second later: logged %v, held %d; want true, 9999", ok, held)
	}
}

// TestBoundedLines: a helper's long line reaches the log cut to 512 bytes.
func TestBoundedLines(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 10000) + "\nend\n"
	sc := bufio.NewScanner(strings.NewReader(in))
	sc.Buffer(make([]byte, 4096), 4096)
	sc.Split(boundedLines)
	var got []string
	for sc.Scan() {
		got = append(got, sc.Text())
	}
	if sc.Err() != nil || len(got) < 3 || got[0] != "short" || got[len(got)-1] != "end" {
		t.Fatalf("lines %d, first %q, err %v", len(got), got[0], sc.Err())
	}
	for _, l := range got {
		if len(l) > 512 {
			t.Errorf("a line of %d bytes", len(l))
		}
	}
}
