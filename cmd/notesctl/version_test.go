package main

import (
	"runtime/debug"
	"testing"
)

func TestReadVersion(t *testing.T) {
	checkout := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/notesctl/notesctl", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "-trimpath", Value: "true"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name                 string
		version, commit, day string
		info                 *debug.BuildInfo
		want                 versionInfo
		detail               string
	}{
		{
			name: "stamped release", version: "v1.2.3", commit: "fedcba9876543210fedcba9876543210fedcba98", day: "2026-12-02T08:00:00Z",
			info:   checkout, // stamps win over build info
			want:   versionInfo{Version: "v1.2.3", Commit: "fedcba9876543210fedcba9876543210fedcba98", Date: "2026-12-02T08:00:00Z", DateKind: "built"},
			detail: "commit fedcba9876543210fedcba9876543210fedcba98, built 2026-12-02T08:00:00Z",
		},
		{
			name: "checkout build with VCS info", info: checkout,
			want:   versionInfo{Version: "devel", Commit: "0123456789abcdef0123456789abcdef01234567", Date: "2026-12-01T10:00:00Z", DateKind: "committed", Modified: true},
			detail: "commit 0123456789abcdef0123456789abcdef01234567 (modified), committed 2026-12-01T10:00:00Z",
		},
		{
			name: "go install of a module version",
			info: &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}},
			want: versionInfo{Version: "v1.4.0"},
		},
		{
			name: "built with -buildvcs=false", info: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			want: versionInfo{Version: "devel"},
		},
		{name: "no build info", want: versionInfo{Version: "devel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readVersion(tt.version, tt.commit, tt.day, tt.info)
			if got != tt.want {
				t.Errorf("readVersion = %+v, want %+v", got, tt.want)
			}
			if d := got.detail(); d != tt.detail {
				t.Errorf("detail = %q, want %q", d, tt.detail)
			}
		})
	}
}
