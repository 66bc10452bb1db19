package api

import (
	"context"
	"net/http"
)

// Statuses of a doctor check.
const (
	DoctorFound   = "found"
	DoctorMissing = "missing"
	DoctorPartial = "partial"
)

// DoctorReport is the answer of GET /v1/doctor: each kernel and platform
// feature the daemon needs or can use, and what it chose.
type DoctorReport struct {
	Checks []DoctorCheck `json:"checks"`
	// Warnings are limits or settings the kernel cannot enforce (a pids
	// limit without the pids controller, say): the profile runs, without
	// them.
	Warnings []string `json:"warnings,omitempty"`
}

// DoctorCheck is one feature.
type DoctorCheck struct {
	Name string `json:"name"`
	// Status is "found", "missing" or "partial".
	Status string `json:"status"`
	// Mode is the mechanism the daemon chose, if the feature decides one.
	Mode string `json:"mode,omitempty"`
	// Detail says what was found, and where.
	Detail string `json:"detail,omitempty"`
	// Cost is what a missing or partial feature costs work.
	Cost string `json:"cost,omitempty"`
	// Fix is how to get the feature.
	Fix string `json:"fix,omitempty"`
}

// Doctor asks the daemon which kernel and platform features it found.
func (c *Client) Doctor(ctx context.Context) (DoctorReport, error) {
	var r DoctorReport
	err := c.do(ctx, http.MethodGet, "/"+Version+"/doctor", nil, &r)
	return r, err
}
