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
