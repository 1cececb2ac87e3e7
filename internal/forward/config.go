package forward

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"aggregator/internal/envconf"
	"aggregator/internal/natsconn"
	"aggregator/internal/subjects"
)

// Config is the forwarding part of the daemon's configuration, embedded
// in it so that the variables are PREFIX_NATS_*.
type Config struct {
	URLs       []string `envconfig:"URL" desc:"comma-separated NATS servers (nats://host:4222, tls://host:4222) to forward every line written to; empty: no forwarding"`
	Stream     string   `envconfig:"STREAM" default:"AGGREGATOR" desc:"JetStream stream the lines go to; created if missing"`
	Subject    string   `envconfig:"SUBJECT" default:"aggregator.lines" desc:"subject prefix: an edge publishes its chunks on PREFIX.EDGE, and a stream the daemon creates takes PREFIX.*"`
	Partitions int      `envconfig:"PARTITIONS" default:"0" desc:"number of partitions a stream the daemon creates maps the edges onto (JetStream's partition() transform, nats-server 2.10+); 0: none. Edges and centrals must agree"`
	Partition  int      `envconfig:"PARTITION" default:"-1" desc:"central daemon: the one partition to consume (0 to AGG_NATS_PARTITIONS-1), with its own durable consumer DURABLE-PARTITION; -1: every partition"`
	Replicas   int      `envconfig:"REPLICAS" default:"1" desc:"replicas of a stream the daemon creates (1 to 5; 3 on a cluster of three)"`
	Consume    string   `envconfig:"CONSUME" desc:"central daemon: a stream to take lines from and write to this daemon's files, exactly once; it then forwards nothing"`
	Durable    string   `envconfig:"DURABLE" default:"aggregator" desc:"central daemon: the durable consumer's name (one per central)"`
	Edge       string   `envconfig:"EDGE" desc:"this daemon's name in message IDs and the Aggregator-Edge header; empty: the host name"`
	Creds      string   `envconfig:"CREDS" desc:"NATS credentials file (JWT and seed)"`
	NKeySeed   string   `envconfig:"NKEY" desc:"file with an NKey seed"`
	User       string   `envconfig:"USER" desc:"NATS user name (with AGG_NATS_PASSWORD)"`
	Password   string   `envconfig:"PASSWORD" secret:"true" desc:"NATS password"`
	Token      string   `envconfig:"TOKEN" secret:"true" desc:"NATS authentication token"`
	CA         string   `envconfig:"CA" desc:"file of CA certificates to verify the NATS servers with (TLS)"`
	Cert       string   `envconfig:"CERT" desc:"client certificate file for TLS (with AGG_NATS_KEY)"`
	Key        string   `envconfig:"KEY" desc:"client key file for TLS"`
}

// Enabled reports whether lines are forwarded: NATS is configured and
// this daemon is not a central one.
func (c *Config) Enabled() bool { return len(c.URLs) > 0 && c.Consume == "" }

// Consuming reports whether this daemon is a central one.
func (c *Config) Consuming() bool { return len(c.URLs) > 0 && c.Consume != "" }

// Validate adds to p what is wrong with the values on their own.
func (c *Config) Validate(p *envconf.Problems) {
	for _, u := range c.URLs {
		parsed, err := url.Parse(u)
		switch {
		case err != nil:
			p.Add("NATS_URL", "%q: %v", u, err)
		case parsed.Scheme != "nats" && parsed.Scheme != "tls":
			p.Add("NATS_URL", "%q: want nats://host:port or tls://host:port", u)
		case parsed.Host == "":
			p.Add("NATS_URL", "%q: no host", u)
		}
	}
	if c.Consume != "" && len(c.URLs) == 0 {
		p.Add("NATS_CONSUME", "needs AGG_NATS_URL")
	}
	if c.Consume != "" && strings.ContainsAny(c.Consume, " .*>\t/\\") {
		p.Add("NATS_CONSUME", "%q: a stream name has no spaces, dots, wildcards or slashes", c.Consume)
	}
	if c.Consuming() && (c.Durable == "" || strings.ContainsAny(c.Durable, " .*>\t/\\")) {
		p.Add("NATS_DURABLE", "%q: a consumer name has no spaces, dots, wildcards or slashes", c.Durable)
	}
	if len(c.URLs) == 0 {
		return
	}
	if c.Stream == "" || strings.ContainsAny(c.Stream, " .*>\t/\\") {
		p.Add("NATS_STREAM", "%q: a stream name has no spaces, dots, wildcards or slashes", c.Stream)
	}
	if c.Subject == "" || strings.ContainsAny(c.Subject, " *>\t") || strings.HasPrefix(c.Subject, ".") || strings.HasSuffix(c.Subject, ".") || strings.Contains(c.Subject, "..") {
		p.Add("NATS_SUBJECT", "%q: want a subject such as aggregator.lines, without wildcards", c.Subject)
	}
	if c.Partitions < 0 || c.Partitions > subjects.MaxPartitions {
		p.Add("NATS_PARTITIONS", "%d: must be between 0 (none) and %d", c.Partitions, subjects.MaxPartitions)
	}
	switch {
	case c.Partition < -1:
		p.Add("NATS_PARTITION", "%d: must be -1 (every partition) or a partition", c.Partition)
	case c.Partition >= 0 && !c.Consuming():
		p.Add("NATS_PARTITION", "only a central daemon (AGG_NATS_CONSUME) consumes a partition")
	case c.Partition >= 0 && c.Partition >= c.Partitions:
		p.Add("NATS_PARTITION", "%d: must be below AGG_NATS_PARTITIONS (%d)", c.Partition, c.Partitions)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		p.Add("NATS_REPLICAS", "%d: must be between 1 and 5", c.Replicas)
	}
	if strings.ContainsAny(c.Edge, "/ \t") {
		p.Add("NATS_EDGE", "%q: no slashes or spaces", c.Edge)
	}
	ways := 0
	for _, set := range []bool{c.Creds != "", c.NKeySeed != "", c.User != "", c.Token != ""} {
		if set {
			ways++
		}
	}
	if ways > 1 {
		p.Add("NATS_CREDS", "choose one of AGG_NATS_CREDS, AGG_NATS_NKEY, AGG_NATS_USER and AGG_NATS_TOKEN")
	}
	if c.Password != "" && c.User == "" {
		p.Add("NATS_PASSWORD", "needs AGG_NATS_USER")
	}
	if (c.Cert == "") != (c.Key == "") {
		p.Add("NATS_CERT", "AGG_NATS_CERT and AGG_NATS_KEY go together")
	}
}

// CheckFiles adds to p the files named that cannot be read.
func (c *Config) CheckFiles(p *envconf.Problems) {
	if len(c.URLs) == 0 {
		return
	}
	for key, name := range map[string]string{"NATS_CREDS": c.Creds, "NATS_NKEY": c.NKeySeed, "NATS_CA": c.CA, "NATS_CERT": c.Cert, "NATS_KEY": c.Key} {
		if name == "" {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			p.Add(key, "%v", err)
			continue
		}
		f.Close()
	}
}

// ConsumerName is the central's durable consumer: one per partition.
func (c *Config) ConsumerName() string {
	if c.Partition >= 0 {
		return fmt.Sprintf("%s-%d", c.Durable, c.Partition)
	}
	return c.Durable
}

// Options are the forwarder's options for this configuration.
func (c *Config) Options(log string) Options {
	edge := c.Edge
	if edge == "" {
		edge, _ = os.Hostname()
	}
	return Options{Options: c.Server(), Stream: c.Stream, Subject: c.Subject, Replicas: c.Replicas, Edge: edge, Partitions: c.Partitions, Log: log}
}

// Server is how to reach and log in to the NATS servers, for an edge's
// forwarder and a central's consumer alike.
func (c *Config) Server() natsconn.Options {
	return natsconn.Options{URLs: c.URLs, Creds: c.Creds, NKeySeed: c.NKeySeed, User: c.User, Password: c.Password, Token: c.Token,
		CA: c.CA, Cert: c.Cert, Key: c.Key}
}
