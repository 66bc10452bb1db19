package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/workcell/workcell/api"
)

func TestParseBinderFlags(t *testing.T) {
	for _, tc := range []struct {
		name            string
		allows, objects []string
		want            []api.BinderService
		wantErr         string
	}{
		{name: "one", allows: []string{"workcell.echo=workcell.IEcho:1"},
			want: []api.BinderService{{Name: "workcell.echo", Descriptor: "workcell.IEcho", Codes: []string{"1"}}}},
		{name: "codes, ranges and fds", allows: []string{"media.player=android.media.IMediaPlayerService:1-3,7:fds"},
			want: []api.BinderService{{Name: "media.player", Descriptor: "android.media.IMediaPlayerService", Codes: []string{"1-3", "7"}, AllowFDs: true}}},
		{name: "object", allows: []string{"s=d:1"}, objects: []string{"s=d.ISession:1,2"},
			want: []api.BinderService{{Name: "s", Descriptor: "d", Codes: []string{"1"}, Objects: []api.BinderInterface{{Descriptor: "d.ISession", Codes: []string{"1", "2"}}}}}},
		{name: "no codes", allows: []string{"s=d"}, wantErr: "want SERVICE=DESCRIPTOR:CODES[:fds]"},
		{name: "no service", allows: []string{"=d:1"}, wantErr: "want SERVICE"},
		{name: "bad suffix", allows: []string{"s=d:1:all"}, wantErr: `may only be "fds"`},
		{name: "twice", allows: []string{"s=d:1", "s=d:2"}, wantErr: "given twice"},
		{name: "object of no service", objects: []string{"s=d:1"}, wantErr: "has no --allow"},
		{name: "object with fds", allows: []string{"s=d:1"}, objects: []string{"s=d.I:1:fds"}, wantErr: "want SERVICE=DESCRIPTOR:CODES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := parseBinderFlags(tc.allows, tc.objects)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(pol.Services, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", pol.Services, err, tc.want)
			}
		})
	}
}

func TestParseExportFlags(t *testing.T) {
	got, err := parseExportFlags([]string{"work.echo=w.IEcho:1,3-4", "work.files@host.files=w.IFiles:2:fds"})
	want := []api.BinderExport{
		{Name: "work.echo", Descriptor: "w.IEcho", Codes: []string{"1", "3-4"}},
		{Name: "work.files", HostName: "host.files", Descriptor: "w.IFiles", Codes: []string{"2"}, AllowFDs: true},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("parseExportFlags = %+v, %v", got, err)
	}
	for _, bad := range []string{"work.echo", "work.echo@=d:1", "=d:1", "s=d", "s=d:1:x", "s=:1"} {
		if _, err := parseExportFlags([]string{bad}); err == nil {
			t.Errorf("parseExportFlags(%q) accepted it", bad)
		}
	}
}
