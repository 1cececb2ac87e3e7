package main

import (
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"aggregator/internal/envconf"
)

func TestShippedConfigMatchesBinary(t *testing.T) {
	shipped, err := envconf.ReadFile("../../configs/downcase.env")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(shipped)), slices.Sorted(slices.Values(knownVariables())); !slices.Equal(got, want) {
		t.Fatalf("configs/downcase.env names %v\nthe binary reads    %v", got, want)
	}
	defaults := envconf.Defaults(envPrefix, &Config{})
	for k, v := range shipped {
		if defaults[k] != v {
			t.Errorf("%s: file says %q, default is %q", k, v, defaults[k])
		}
	}
	if _, err := loadConfig(lookupIn(shipped)); err != nil {
		t.Fatalf("shipped configuration does not load: %v", err)
	}
}

// TestWebConfigChecked: a web configuration that does not hold is a
// configuration error naming DOWNCASE_WEB_CONFIG_FILE.
func TestWebConfigChecked(t *testing.T) {
	bad := t.TempDir() + "/web.yml"
	if err := os.WriteFile(bad, []byte("tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(lookupIn(map[string]string{"DOWNCASE_WEB_CONFIG_FILE": bad})); err == nil || !strings.Contains(err.Error(), "DOWNCASE_WEB_CONFIG_FILE") {
		t.Fatalf("loadConfig: %v", err)
	}
}

// lookupIn is an environment of just env, as run() takes it.
func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// The variables the program reads are those -help lists.
func TestReadsWhatHelpLists(t *testing.T) {
	if got, want := envconf.Names(envPrefix, &Config{}), knownVariables(); !slices.Equal(got, want) {
		t.Errorf("reads %v\n-help lists %v", got, want)
	}
}
