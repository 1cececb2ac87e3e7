package ingest

import (
	"strings"
	"testing"
)

func TestCheckEndpoint(t *testing.T) {
	tests := []struct {
		name string
		ep   string
		bind bool
		ok   bool
	}{
		{"default", "tcp://127.0.0.1:4444", false, true},
		{"hostname", "tcp://logs.example:4444", false, true},
		{"ipv6", "tcp://[::1]:4444", false, true},
		{"bind all", "tcp://*:4444", true, true},
		{"bind any port", "tcp://127.0.0.1:*", true, true},
		{"connect to *", "tcp://*:4444", false, false},
		{"ipc", "ipc:///run/app.sock", false, true},
		{"no scheme", "127.0.0.1:4444", false, false},
		{"no port", "tcp://127.0.0.1", false, false},
		{"bad port", "tcp://127.0.0.1:99999", false, false},
		{"port zero connect", "tcp://127.0.0.1:0", false, false},
		{"empty host", "tcp://:4444", false, false},
		{"udp", "udp://127.0.0.1:4444", false, false},
		{"empty ipc", "ipc://", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckEndpoint(tt.ep, tt.bind)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckEndpoint(%q, bind=%v) = %v, want ok=%v", tt.ep, tt.bind, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), tt.ep) {
				t.Fatalf("error %q does not name the endpoint", err)
			}
		})
	}
}

func FuzzCheckEndpoint(f *testing.F) {
	for _, s := range []string{"tcp://127.0.0.1:4444", "ipc:///x", "tcp://*:*", "tcp://[::1]:1", "x"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, ep string, bind bool) {
		if err := CheckEndpoint(ep, bind); err == nil && !strings.Contains(ep, "://") {
			t.Fatalf("accepted %q", ep)
		}
	})
}
