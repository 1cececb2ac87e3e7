package main

import (
	"maps"
	"slices"
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
	for k, v := range shipped {
		t.Setenv(k, v)
	}
	if _, err := loadConfig(); err != nil {
		t.Fatalf("shipped configuration does not load: %v", err)
	}
}
