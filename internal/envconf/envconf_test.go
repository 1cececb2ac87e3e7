package envconf

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

type Embedded struct {
	E string `envconfig:"E" default:"e"`
}

type spec struct {
	Embedded
	N    int           `envconfig:"N" default:"1"`
	B    bool          `envconfig:"B" default:"true"`
	D    time.Duration `envconfig:"D" default:"1s"`
	List []string      `envconfig:"LIST"`
}

// env is a lookup over a map, as run() is given in tests.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestProcessReportsEveryBadVariable(t *testing.T) {
	var s spec
	err := Process("T", &s, env(map[string]string{"T_N": "ten", "T_B": "maybe", "T_D": "soon", "T_LIST": " a, b ,,"}))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{`T_N="ten"`, `T_B="maybe"`, `T_D="soon"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
	if got := TrimList(s.List); strings.Join(got, "|") != "a|b" {
		t.Errorf("list %q", got)
	}
}

func TestProcessDefaultsAndValues(t *testing.T) {
	var s spec
	if err := Process("T", &s, env(map[string]string{"T_N": "0x10", "T_LIST": ""})); err != nil {
		t.Fatal(err)
	}
	if s.N != 16 || !s.B || s.D != time.Second || s.List != nil {
		t.Errorf("%+v", s)
	}
}

// A variable is read under its full name only: envconfig would take USER
// (set by every shell and by systemd's User=) for T_NATS_USER.
func TestProcessIgnoresBareNames(t *testing.T) {
	var s struct {
		NATS struct {
			User string `envconfig:"USER"`
		} `envconfig:"NATS"`
		N int `envconfig:"N"`
	}
	if err := Process("T", &s, env(map[string]string{"USER": "root", "NATS_USER": "root", "N": "5"})); err != nil {
		t.Fatal(err)
	}
	if s.NATS.User != "" || s.N != 0 {
		t.Errorf("bare names were read: %+v", s)
	}
	if err := Process("T", &s, env(map[string]string{"T_NATS_USER": "edge"})); err != nil || s.NATS.User != "edge" {
		t.Errorf("T_NATS_USER: %q, %v", s.NATS.User, err)
	}
}

// Process reads exactly the variables -help lists (envconfig's names).
func TestProcessKeysAreEnvconfigs(t *testing.T) {
	var keys []string
	for _, v := range fields("T", reflect.ValueOf(&spec{}).Elem()) {
		keys = append(keys, v.key)
	}
	if got, want := strings.Join(keys, " "), strings.Join(Keys("T", &spec{}), " "); got != want {
		t.Errorf("Process reads %s; envconfig lists %s", got, want)
	}
}

func TestDefaults(t *testing.T) {
	d := Defaults("T", &spec{})
	if d["T_N"] != "1" || d["T_D"] != "1s" || d["T_LIST"] != "" || d["T_E"] != "e" || len(d) != 5 {
		t.Fatalf("%v", d)
	}
}

func TestAttrs(t *testing.T) {
	type inner struct {
		URL      string `envconfig:"URL"`
		Password string `envconfig:"PASSWORD" secret:"true"`
	}
	type KeyFiles struct {
		KeyFile string `envconfig:"KEY_FILE"`
	}
	var spec struct {
		Every time.Duration `envconfig:"EVERY"`
		List  []string      `envconfig:"LIST"`
		KeyFiles
		Exported KeyFiles
		NATS     inner `envconfig:"NATS"`
		ignored  int
	}
	spec.Every, spec.List = 2*time.Second, []string{"a", "b"}
	spec.KeyFile, spec.Exported.KeyFile, spec.NATS.URL, spec.NATS.Password = "k", "x", "nats://x", "hunter2"
	var got []string
	for _, a := range Attrs("T", &spec) {
		got = append(got, a.String())
	}
	want := []string{"every=2s", "list=[a b]", "key_file=k", "exported_key_file=x", "nats_url=nats://x", "nats_password_set=true"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Attrs = %v, want %v", got, want)
	}
}
