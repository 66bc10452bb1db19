package binder

import "testing"

func TestExportPolicyValidate(t *testing.T) {
	svc := ServicePolicy{Name: "host.echo", Descriptor: "d", Codes: []CodeRange{Code(1)}}
	ok := ExportPolicy{Name: "work.echo", HostName: "work.echo.shared", Descriptor: "d", Codes: []CodeRange{{1, 3}}}
	if err := (ProxyPolicy{Services: []ServicePolicy{svc}, Exports: []ExportPolicy{ok}}).Validate(); err != nil {
		t.Fatal(err)
	}
	for name, e := range map[string][]ExportPolicy{
		"bad name":          {{Name: "bad name", Descriptor: "d"}},
		"bad host name":     {{Name: "w", HostName: "b@d", Descriptor: "d"}},
		"no descriptor":     {{Name: "w"}},
		"meta code":         {{Name: "w", Descriptor: "d", Codes: []CodeRange{Code(DumpTransaction)}}},
		"listed twice":      {{Name: "w", Descriptor: "d"}, {Name: "w", HostName: "x", Descriptor: "d"}},
		"host name twice":   {{Name: "w", HostName: "x", Descriptor: "d"}, {Name: "x", Descriptor: "d"}},
		"imported name too": {{Name: "host.echo", Descriptor: "d"}},
	} {
		if err := (ProxyPolicy{Services: []ServicePolicy{svc}, Exports: e}).Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if e, found := (ProxyPolicy{Exports: []ExportPolicy{ok}}).Export("work.echo"); !found || e.hostName() != "work.echo.shared" {
		t.Errorf("Export = %+v, %v", e, found)
	}
	if (ExportPolicy{Name: "w"}).hostName() != "w" {
		t.Error("the host name does not default to the name")
	}
}
