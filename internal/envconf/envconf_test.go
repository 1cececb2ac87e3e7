package envconf

import (
	"strings"
	"testing"
	"time"
)

type embedded struct {
	E string `envconfig:"E" default:"e"`
}

type spec struct {
	embedded
	N    int           `envconfig:"N" default:"1"`
	B    bool          `envconfig:"B" default:"true"`
	D    time.Duration `envconfig:"D" default:"1s"`
	List []string      `envconfig:"LIST"`
}

func TestProcessReportsEveryBadVariable(t *testing.T) {
	t.Setenv("T_N", "ten")
	t.Setenv("T_B", "maybe")
	t.Setenv("T_D", "soon")
	t.Setenv("T_LIST", " a, b ,,")
	var s spec
	err := Process("T", &s)
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
	type embedded struct {
		KeyFile string `envconfig:"KEY_FILE"`
	}
	var spec struct {
		Every time.Duration `envconfig:"EVERY"`
		List  []string      `envconfig:"LIST"`
		embedded
		Exported embedded
		NATS     inner `envconfig:"NATS"`
		ignored  int
	}
	spec.Every, spec.List = 2*time.Second, []string{"a", "b"}
	spec.KeyFile, spec.Exported.KeyFile, spec.NATS.URL, spec.NATS.Password = "k", "x", "nats://x", "hunter2"
	var got []string
	for _, a := range Attrs(&spec) {
		got = append(got, a.String())
	}
	want := []string{"every=2s", "list=[a b]", "key_file=k", "exported_key_file=x", "nats_url=nats://x", "nats_password_set=true"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Attrs = %v, want %v", got, want)
	}
}
