package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	usage := func(w io.Writer) { io.WriteString(w, "USAGE\n") }
	keyPrefix := filepath.Join(t.TempDir(), "k")
	tests := []struct {
		name   string
		args   []string
		exit   int // -1: no exit, run on
		check  bool
		stdout string
	}{
		{"nothing", nil, -1, false, ""},
		{"check", []string{"-check-config"}, -1, true, ""},
		{"help", []string{"-help"}, ExitOK, false, "USAGE"},
		{"version", []string{"-version"}, ExitOK, false, "prog v1"},
		{"unknown flag", []string{"-bogus"}, ExitUsage, false, ""},
		{"argument", []string{"extra"}, ExitUsage, false, ""},
		{"keygen", []string{"-curve-keygen", keyPrefix}, ExitOK, false, keyPrefix + "_secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			f := Parse("prog", "v1", tt.args, &out, &errOut, usage)
			exit := -1
			if f.Exit != nil {
				exit = *f.Exit
			}
			if exit != tt.exit || f.CheckConfig != tt.check || !strings.Contains(out.String(), tt.stdout) {
				t.Fatalf("exit %d check %v stdout %q stderr %q", exit, f.CheckConfig, out.String(), errOut.String())
			}
		})
	}
	if _, err := os.Stat(keyPrefix); err != nil {
		t.Errorf("-curve-keygen wrote no public certificate: %v", err)
	}
}

func TestCheckLog(t *testing.T) {
	if l, f := CheckLog("warn", "json"); l != nil || f != nil {
		t.Fatalf("%v %v", l, f)
	}
	if l, f := CheckLog("loud", "xml"); l == nil || f == nil {
		t.Fatal("bad level and format accepted")
	}
}
