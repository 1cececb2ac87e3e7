package main

import (
	"strings"
	"testing"

	"aggregator/internal/docgen"
	"aggregator/internal/envconf"
)

// TestConfigurationDoc: docs/downcase.md lists the variables -help lists,
// with the same types, defaults and meanings.
func TestConfigurationDoc(t *testing.T) {
	var sb strings.Builder
	envconf.MarkdownTable(&sb, envPrefix, &Config{})
	docgen.Check(t, "../../docs/downcase.md", "variables", sb.String())
}
