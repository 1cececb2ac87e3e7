package logread

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"time"

	"aggregator/internal/sink"
)

// record is one stored line, parsed as far as a filter or an output needs.
type record struct {
	line []byte    // as stored, without its newline
	time time.Time // zero when the line is not in the daemon's format
	ok   bool      // the line is in the daemon's format

	json bool
	// Text lines: the message part after the time (and a central's edge),
	// frames joined by TAB, each escaped.
	body []byte
	// JSON lines: the fields.
	fields jsonLine
	edge   string
}

// jsonLine is a line of AGG_FORMAT=json, with a central's "edge".
type jsonLine struct {
	Edge          string `json:"edge,omitempty"`
	Time          string `json:"time"`
	Endpoint      string `json:"endpoint"`
	Peer          string `json:"peer"`
	Topic         string `json:"topic"`
	TopicBase64   string `json:"topic_base64,omitempty"`
	Message       string `json:"message"`
	MessageBase64 string `json:"message_base64,omitempty"`
	Truncated     bool   `json:"truncated,omitempty"`
}

// parse reads a stored line. central: a text line carries the edge's
// name after its time.
func parse(line []byte, central bool) record {
	r := record{line: line}
	if len(line) > 0 && line[0] == '{' {
		if json.Unmarshal(line, &r.fields) != nil {
			return r
		}
		t, err := time.Parse(time.RFC3339Nano, r.fields.Time)
		if err != nil {
			return r
		}
		r.time, r.ok, r.json, r.edge = t, true, true, r.fields.Edge
		return r
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return r
	}
	ns, ok := sink.LineTime(line)
	if !ok {
		return r
	}
	r.time, r.ok, r.body = time.Unix(0, ns), true, line[sp+1:]
	if central {
		edge, body, found := bytes.Cut(r.body, []byte{' '})
		if !found {
			r.ok = false
			return r
		}
		r.edge, r.body = string(edge), body
	}
	return r
}

// parseUntimed is parse without reading the time (its cost is most of a
// line's when nothing compares times): a text line only has to look like
// one of the daemon's.
func parseUntimed(line []byte, central bool) record {
	if len(line) > 0 && line[0] == '{' {
		return parse(line, central)
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 20 || line[4] != '-' || line[7] != '-' || line[10] != 'T' || line[13] != ':' {
		return record{line: line}
	}
	r := record{line: line, ok: true, body: line[sp+1:]}
	if central {
		edge, body, found := bytes.Cut(r.body, []byte{' '})
		if !found {
			return record{line: line}
		}
		r.edge, r.body = string(edge), body
	}
	return r
}

// frames are the message's frames as the producer sent them: frame 0 is
// the topic of a multipart message.
func (r *record) frames() ([][]byte, error) {
	if r.json {
		topic, err := field(r.fields.Topic, r.fields.TopicBase64)
		if err != nil {
			return nil, err
		}
		msg, err := field(r.fields.Message, r.fields.MessageBase64)
		if err != nil {
			return nil, err
		}
		if len(topic) == 0 {
			return [][]byte{msg}, nil
		}
		return append([][]byte{topic}, bytes.Split(msg, []byte{'\t'})...), nil
	}
	var out [][]byte
	for f := range bytes.SplitSeq(r.body, []byte{'\t'}) {
		u, err := sink.Unescape(f)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

func field(text, b64 string) ([]byte, error) {
	if b64 != "" {
		return base64.StdEncoding.DecodeString(b64)
	}
	return []byte(text), nil
}

// topic is the first frame of a multipart message, as stored (escaped in
// a text line); empty for a single frame.
func (r *record) topic() []byte {
	if r.json {
		b, _ := field(r.fields.Topic, r.fields.TopicBase64)
		return b
	}
	if i := bytes.IndexByte(r.body, '\t'); i >= 0 {
		return r.body[:i]
	}
	return nil
}

// message is the part after the topic, as stored.
func (r *record) message() []byte {
	if r.json {
		b, _ := field(r.fields.Message, r.fields.MessageBase64)
		return b
	}
	if i := bytes.IndexByte(r.body, '\t'); i >= 0 {
		return r.body[i+1:]
	}
	return r.body
}

// stamp is the time as the line stores it.
func (r *record) stamp() []byte {
	if r.json {
		return []byte(r.fields.Time)
	}
	stamp, _, _ := bytes.Cut(r.line, []byte{' '})
	return stamp
}
