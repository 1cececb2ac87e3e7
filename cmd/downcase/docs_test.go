package main

import (
	"testing"

	"aggregator/internal/docgen"
)

// TestConfigurationDoc: docs/downcase.md lists the variables -help lists,
// with the same types, defaults and meanings.
func TestConfigurationDoc(t *testing.T) {
	docgen.CheckVariables(t, "../../docs/downcase.md", envPrefix, &Config{})
}
