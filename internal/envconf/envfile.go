package envconf

import (
	"bufio"
	"os"
	"reflect"
	"regexp"
	"strings"
)

// envLine matches an assignment in an environment file, commented out or not.
var envLine = regexp.MustCompile(`^#?\s*([A-Z][A-Z0-9_]*)=(.*)$`)

// ReadFile returns the variables an environment file mentions, commented
// out or not, with their values. Used to check shipped example files
// against the binaries.
func ReadFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := envLine.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			vars[m[1]] = m[2]
		}
	}
	return vars, sc.Err()
}

// Defaults maps each variable of spec, as Process reads them, to its
// `default` tag.
func Defaults(prefix string, spec any) map[string]string {
	out := map[string]string{}
	for _, v := range fields(prefix, reflect.ValueOf(spec).Elem()) {
		out[v.key] = v.tag.Get("default")
	}
	return out
}
