package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/workcell/workcell/api"
)

func TestDoctorPrintsFixesAndJSON(t *testing.T) {
	rep := api.DoctorReport{
		Checks: []api.DoctorCheck{
			{Name: "pid namespace", Status: api.DoctorMissing, Mode: "host pid namespace, hidepid procfs", Detail: "clone: EINVAL",
				Cost: "work shares the host's pid namespace", Fix: "enable CONFIG_PID_NS"},
			{Name: "seccomp", Status: api.DoctorFound, Mode: "default profile", Detail: "filters"},
		},
		Warnings: []string{"pids limit 100 of profile work is not enforced"},
	}
	sock := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v1/doctor" {
			reply(w, http.StatusNotFound, api.ErrorBody{Code: "not_found", Message: r.URL.Path})
			return
		}
		reply(w, http.StatusOK, rep)
	})
	code, out, errs := runCLI(t, sock, "doctor")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"FEATURE", "pid namespace", "missing", "fix:  enable CONFIG_PID_NS", "cost: work shares", "warnings:", "pids limit"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "seccomp is found") {
		t.Errorf("a found feature got a fix section:\n%s", out)
	}
	code, out, _ = runCLI(t, sock, "doctor", "--json")
	var back api.DoctorReport
	if code != 0 || json.Unmarshal([]byte(out), &back) != nil || len(back.Checks) != 2 || back.Checks[0].Fix != "enable CONFIG_PID_NS" {
		t.Fatalf("--json: exit %d, %q", code, out)
	}
	if code, _, _ := runCLI(t, sock, "doctor", "extra"); code != exitInvalid {
		t.Fatalf("doctor with an argument: exit %d, want %d", code, exitInvalid)
	}
}
