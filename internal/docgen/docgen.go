// Package docgen keeps generated parts of the Markdown docs in step with
// the code that generates them: a test renders the part, and Check fails
// when the committed doc holds anything else. With UPDATE_DOCS=1 it
// writes the part into the doc instead.
//
// A generated part sits between two markers in the doc:
//
//	<!-- generated: NAME -->
//	...
//	<!-- end of generated: NAME -->
package docgen

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"aggregator/internal/envconf"
)

// Check compares the part NAME of the doc at path with want.
func Check(t *testing.T, path, name, want string) {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin := fmt.Sprintf("<!-- generated: %s -->\n", name)
	end := fmt.Sprintf("<!-- end of generated: %s -->", name)
	doc := string(text)
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q markers", path, strings.TrimSpace(begin), end)
	}
	i += len(begin)
	if doc[i:j] == want {
		return
	}
	if os.Getenv("UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, []byte(doc[:i]+want+doc[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s rewritten", path, name)
		return
	}
	t.Errorf("%s: the part %q differs from what the code says; run the test again with UPDATE_DOCS=1 and commit the doc.\nwant:\n%s", path, name, want)
}

// CheckVariables checks the part "variables" of the doc at path: the
// table of spec's variables PREFIX_*, generated from the struct tags that
// -help prints (envconf.MarkdownTable).
func CheckVariables(t *testing.T, path, prefix string, spec any) {
	t.Helper()
	var sb strings.Builder
	envconf.MarkdownTable(&sb, prefix, spec)
	Check(t, path, "variables", sb.String())
}
