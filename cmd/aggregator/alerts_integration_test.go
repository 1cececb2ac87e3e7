package main

import (
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"aggregator/internal/eventually"
)

const alertRules = "../../configs/alerts.yml"

// TestAlertRules checks the shipped alerting rules with Prometheus' own
// tool, runs their unit tests (each alert fires where it should and stays
// quiet where it should not), and checks that every metric they name is
// one the daemon really exports, as an edge and as a central: a rule over a
// misspelt or renamed metric never fires, and nothing else would notice.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: run scripts/install-deps --test (Debian package prometheus)")
	}
	if out, err := exec.Command(promtool, "check", "rules", alertRules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := exec.Command(promtool, "test", "rules", "../../configs/alerts_test.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	rules, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, m := range regexp.MustCompile(`expr:.*`).FindAllString(string(rules), -1) {
		named = append(named, regexp.MustCompile(`\baggregator_[a-z_]+\b`).FindAllString(m, -1)...)
	}
	if len(named) == 0 {
		t.Fatal("no aggregator_ metric in the rules")
	}

	exported := exportedMetrics(t)
	var missing []string
	for _, name := range named {
		if !exported[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the rules name metrics the daemon does not export: %v", missing)
	}
}

// exportedMetrics is the name of every aggregator_ metric an edge (a bind
// and a connect endpoint, forwarding) and a central export, NATS being
// down for both: forwarding and consuming register their metrics all the
// same.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	nats := "nats://" + freeAddr(t)
	exported := map[string]bool{}
	bindEP := "tcp://" + freeAddr(t)
	for _, env := range []map[string]string{
		{"AGG_NATS_URL": nats, "AGG_CONNECT": "tcp://" + freeAddr(t), "AGG_BIND": bindEP},
		{"AGG_NATS_URL": nats, "AGG_NATS_CONSUME": "AGGREGATOR"},
	} {
		p := startAggNotReady(t, env)
		if env["AGG_BIND"] != "" {
			// The bind endpoint's "listening" event makes the connection
			// events counter appear, once the loop has read it.
			eventually.Within(t, 10*time.Second, "the listening event counted", func() bool {
				_, ok := p.metrics()[`aggregator_connection_events_total{endpoint="`+bindEP+`",event="listening"}`]
				return ok
			})
		}
		for series := range p.metrics() {
			name, _, _ := strings.Cut(series, "{")
			name = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if strings.HasPrefix(name, "aggregator_") {
				exported[name] = true
			}
		}
		p.stop()
	}
	return exported
}

// TestMetricsDoc: docs/metrics.md names every aggregator_ metric the
// daemon exports, and none it does not.
func TestMetricsDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, name := range regexp.MustCompile("`(aggregator_[a-z_]+)").FindAllStringSubmatch(string(doc), -1) {
		listed[name[1]] = true
	}
	exported := exportedMetrics(t)
	for name := range exported {
		if !listed[name] {
			t.Errorf("docs/metrics.md does not list %s", name)
		}
	}
	for name := range listed {
		if !exported[name] {
			t.Errorf("docs/metrics.md lists %s, which the daemon does not export", name)
		}
	}
}
