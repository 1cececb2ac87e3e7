// Package envconf reads a configuration struct from environment variables
// with envconfig, reporting every bad variable at once, and prints the
// variable table for -help. Both binaries configure themselves through it.
package envconf

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Process fills spec from the variables PREFIX_*. envconfig stops at the
// first value it cannot parse; to report every one, that variable is
// noted, hidden from the environment, and the rest read again. The
// environment is restored before Process returns.
func Process(prefix string, spec any) error {
	var (
		errs   []error
		hidden = map[string]string{}
	)
	defer func() {
		for k, v := range hidden {
			os.Setenv(k, v)
		}
	}()
	for {
		err := envconfig.Process(prefix, spec)
		var pe *envconfig.ParseError
		if !errors.As(err, &pe) {
			return errors.Join(append(errs, err)...)
		}
		if _, seen := hidden[pe.KeyName]; seen {
			return errors.Join(append(errs, err)...)
		}
		errs = append(errs, fmt.Errorf("%s=%q: not a valid %s", pe.KeyName, pe.Value, typeWord(pe.TypeName)))
		hidden[pe.KeyName] = pe.Value
		os.Unsetenv(pe.KeyName)
	}
}

func typeWord(goType string) string {
	switch goType {
	case "int":
		return "whole number"
	case "bool":
		return "boolean (true or false)"
	case "time.Duration":
		return "duration (such as 100ms, 5s or 24h)"
	}
	return goType
}

// TrimList trims spaces around list items and drops empty ones, so that
// "a, b," means [a b].
func TrimList(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

const tableFormat = `Configuration is read from these environment variables:

VARIABLE	TYPE	DEFAULT	MEANING
{{range .}}{{usage_key .}}	{{usage_type .}}	{{usage_default .}}	{{usage_description .}}
{{end}}`

// PrintTable writes every variable with its type, default and meaning
// (the `desc` tag).
func PrintTable(w io.Writer, prefix string, spec any) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	envconfig.Usagef(prefix, spec, tw, tableFormat)
	tw.Flush()
}

// MarkdownTable writes the table PrintTable writes, from the same tags,
// as Markdown: the configuration references in docs/ are generated from
// it, so that they say what -help says.
func MarkdownTable(w io.Writer, prefix string, spec any) {
	var sb strings.Builder
	envconfig.Usagef(prefix, spec, &sb, "{{range .}}{{usage_key .}}\x00{{usage_type .}}\x00{{usage_default .}}\x00{{usage_description .}}\n{{end}}")
	cell := strings.NewReplacer("|", "\\|").Replace
	fmt.Fprintln(w, "| variable | type | default | meaning |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, line := range strings.Split(strings.TrimSuffix(sb.String(), "\n"), "\n") {
		f := strings.Split(line, "\x00")
		def := "(none)"
		if f[2] != "" {
			def = "`" + f[2] + "`"
		}
		fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", f[0], cell(f[1]), cell(def), cell(f[3]))
	}
}

// Keys lists the names of every variable spec reads.
func Keys(prefix string, spec any) []string {
	var sb strings.Builder
	envconfig.Usagef(prefix, spec, &sb, "{{range .}}{{usage_key .}}\n{{end}}")
	return strings.Fields(sb.String())
}

// Problems collects what is wrong with a configuration, each problem
// naming its variable, so that a user sees every one at once.
type Problems struct {
	prefix string
	errs   []error
}

// NewProblems starts an empty list for variables PREFIX_*.
func NewProblems(prefix string) *Problems { return &Problems{prefix: prefix} }

// Add records a problem with variable PREFIX_key.
func (p *Problems) Add(key, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s_%s: %s", p.prefix, key, fmt.Sprintf(format, args...)))
}

// AddErr records err, if not nil, as a problem with PREFIX_key.
func (p *Problems) AddErr(key string, err error) {
	if err != nil {
		p.Add(key, "%v", err)
	}
}

// Err joins the problems, one a line; nil when there are none.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// Attrs are spec's settings as log attributes, named as their variables
// without the prefix, in lower case (AGG_MAX_SIZE_MB is max_size_mb), in
// the order of the struct: the start-up line shows every setting, and a
// setting added to the struct shows up without anyone listing it. A field
// tagged secret:"true" shows only whether it is set.
func Attrs(spec any) []slog.Attr {
	return appendAttrs(nil, "", reflect.Indirect(reflect.ValueOf(spec)))
}

func appendAttrs(out []slog.Attr, prefix string, v reflect.Value) []slog.Attr {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		name, tagged := f.Tag.Lookup("envconfig")
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			// As envconfig reads them: an embedded struct's variables
			// are its parent's; another's take its name as a prefix.
			inner := prefix
			switch {
			case f.Anonymous:
			case tagged:
				inner += strings.ToLower(name) + "_"
			default:
				inner += strings.ToLower(f.Name) + "_"
			}
			out = appendAttrs(out, inner, fv)
			continue
		}
		if !tagged {
			continue
		}
		key := prefix + strings.ToLower(name)
		switch {
		case f.Tag.Get("secret") == "true":
			out = append(out, slog.Bool(key+"_set", !fv.IsZero()))
		case fv.Type() == reflect.TypeFor[time.Duration]():
			out = append(out, slog.Duration(key, time.Duration(fv.Int())))
		default:
			out = append(out, slog.Any(key, fv.Interface()))
		}
	}
	return out
}
