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

// Defaults maps each variable of spec to its `default` tag, including the
// fields of embedded structs (envconfig reads those with the same prefix).
func Defaults(prefix string, spec any) map[string]string {
	out := map[string]string{}
	addDefaults(out, prefix, reflect.TypeOf(spec).Elem())
	return out
}

func addDefaults(out map[string]string, prefix string, t reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		switch key := f.Tag.Get("envconfig"); {
		case f.Anonymous && f.Type.Kind() == reflect.Struct:
			addDefaults(out, prefix, f.Type)
		case f.Type.Kind() == reflect.Struct && key != "": // a named group: PREFIX_KEY_*
			addDefaults(out, prefix+"_"+key, f.Type)
		case key != "":
			out[prefix+"_"+key] = f.Tag.Get("default")
		}
	}
}
