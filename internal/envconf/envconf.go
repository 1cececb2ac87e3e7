// Package envconf reads a configuration struct from environment variables
// with envconfig, reporting every bad variable at once, and prints the
// variable table for -help. Both binaries configure themselves through it.
package envconf

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Process fills spec from the variables PREFIX_*, read with lookup
// (os.LookupEnv in the programs; a map in tests), taking each field's
// `default` tag when its variable is not set. It reports every value it
// cannot parse at once, each naming its variable.
//
// The variables and their names are envconfig's (the struct tags, as
// -help prints them, and Keys lists them), but not its lookup: when
// AGG_NATS_USER is not set, envconfig.Process falls back to the bare tag
// name, USER, which every shell and every systemd service with User= sets;
// CONNECT, KEY or TOKEN would configure the daemon just as silently. Here
// a variable is read under its full name only.
func Process(prefix string, spec any, lookup func(string) (string, bool)) error {
	var errs []error
	for _, v := range fields(prefix, reflect.ValueOf(spec).Elem()) {
		value, ok := lookup(v.key)
		if !ok {
			value, ok = v.tag.Lookup("default")
		}
		if !ok {
			continue
		}
		if err := set(v.field, value); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a valid %s", v.key, value, typeWord(v.field.Type().String())))
			// The default stands in, so that checks of the values do not
			// report this variable a second time.
			if def, ok := v.tag.Lookup("default"); ok {
				set(v.field, def)
			}
		}
	}
	return errors.Join(errs...)
}

// variable is one field of a spec and the variable it is read from.
type variable struct {
	key   string
	field reflect.Value
	tag   reflect.StructTag
}

// fields lists spec's variables as envconfig names them: PREFIX_TAG, or
// PREFIX_FIELDNAME without a tag; a nested struct's fields take its name
// as a further prefix, an embedded struct's are its parent's.
func fields(prefix string, v reflect.Value) []variable {
	var out []variable
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !v.Field(i).CanSet() {
			continue
		}
		name := f.Name
		if tag := f.Tag.Get("envconfig"); tag != "" {
			name = tag
		}
		key := strings.ToUpper(prefix + "_" + name)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			inner := key
			if f.Anonymous {
				inner = prefix
			}
			out = append(out, fields(inner, v.Field(i))...)
			continue
		}
		out = append(out, variable{key: key, field: v.Field(i), tag: f.Tag})
	}
	return out
}

// set parses value into field as envconfig does for the kinds the
// programs use: strings, booleans, integers, durations and comma-separated
// lists of strings (a blank value is an empty list).
func set(field reflect.Value, value string) error {
	switch {
	case field.Type() == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(value)
		if err != nil {
			return err
		}
		field.SetInt(int64(d))
	case field.Kind() == reflect.String:
		field.SetString(value)
	case field.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return err
		}
		field.SetBool(b)
	case field.Kind() == reflect.Int:
		n, err := strconv.ParseInt(value, 0, 0)
		if err != nil {
			return err
		}
		field.SetInt(n)
	case field.Type() == reflect.TypeFor[[]string]():
		var list []string
		if strings.TrimSpace(value) != "" {
			list = strings.Split(value, ",")
		}
		field.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("unsupported type %s", field.Type())
	}
	return nil
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
func Attrs(prefix string, spec any) []slog.Attr {
	var out []slog.Attr
	for _, v := range fields(prefix, reflect.ValueOf(spec).Elem()) {
		key := strings.ToLower(strings.TrimPrefix(v.key, strings.ToUpper(prefix)+"_"))
		switch {
		case v.tag.Get("secret") == "true":
			out = append(out, slog.Bool(key+"_set", !v.field.IsZero()))
		case v.field.Type() == reflect.TypeFor[time.Duration]():
			out = append(out, slog.Duration(key, time.Duration(v.field.Int())))
		default:
			out = append(out, slog.Any(key, v.field.Interface()))
		}
	}
	return out
}

// Names lists the variables Process reads for spec, in order; a test of
// each program checks that they are the ones Keys (envconfig, -help)
// lists.
func Names(prefix string, spec any) []string {
	var out []string
	for _, v := range fields(prefix, reflect.ValueOf(spec).Elem()) {
		out = append(out, v.key)
	}
	return out
}
