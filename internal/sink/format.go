package sink

import (
	"encoding/base64"
	"fmt"
	"time"
	"unicode/utf8"

	"aggregator/internal/queue"
)

// Format selects the line layout.
type Format int

const (
	// Text lines: "<RFC 3339 receive time, microseconds> <message>".
	Text Format = iota
	// JSON lines: one object a line with time, endpoint, peer, topic and
	// message fields.
	JSON
)

// ParseFormat reads "text" or "json".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "text":
		return Text, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("unknown format %q (want text or json)", s)
}

func (f Format) String() string {
	if f == JSON {
		return "json"
	}
	return "text"
}

// NeedsPeer reports whether lines in this format show the peer address.
func (f Format) NeedsPeer() bool { return f == JSON }

// clock formats receive times. Formatting a full timestamp costs more than
// the rest of a line, so the part up to the second is kept and only the
// microseconds are written per line.
type clock struct {
	loc    *time.Location
	sec    int64
	prefix []byte // "2006-01-02T15:04:05"
	zone   []byte // "Z" or "+01:00"
}

func newClock(loc *time.Location) *clock {
	if loc == nil {
		loc = time.UTC
	}
	return &clock{loc: loc, sec: -1 << 62}
}

func (c *clock) append(dst []byte, unixNano int64) []byte {
	sec, nsec := unixNano/1e9, unixNano%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	if sec != c.sec {
		t := time.Unix(sec, 0).In(c.loc)
		c.prefix = t.AppendFormat(c.prefix[:0], "2006-01-02T15:04:05")
		c.zone = t.AppendFormat(c.zone[:0], "Z07:00")
		c.sec = sec
	}
	dst = append(dst, c.prefix...)
	us := nsec / 1000
	dst = append(dst, '.',
		byte('0'+us/100000), byte('0'+us/10000%10), byte('0'+us/1000%10),
		byte('0'+us/100%10), byte('0'+us/10%10), byte('0'+us%10))
	return append(dst, c.zone...)
}

// encoder turns records into lines. It is owned by the writer goroutine.
type encoder struct {
	format Format
	clock  *clock
}

// appendLine appends one record as one line, newline included.
func (e *encoder) appendLine(dst []byte, endpoint string, r *queue.Record) []byte {
	if e.format == JSON {
		return e.appendJSON(dst, endpoint, r)
	}
	dst = e.clock.append(dst, r.Time)
	dst = append(dst, ' ')
	for i, f := range r.Frames {
		if i > 0 {
			dst = append(dst, '\t')
		}
		dst = AppendEscaped(dst, f)
	}
	return append(dst, '\n')
}

// appendJSON writes {"time","endpoint","peer","topic","message"}. In a
// multipart message frame 0 is the topic and the rest, joined by TAB, the
// message; a single-frame message has an empty topic. A field that is not
// valid UTF-8 is written base64-encoded under the same name plus "_base64",
// so that the line stays valid JSON and the bytes stay exact.
func (e *encoder) appendJSON(dst []byte, endpoint string, r *queue.Record) []byte {
	dst = append(dst, `{"time":"`...)
	dst = e.clock.append(dst, r.Time)
	dst = append(dst, `","endpoint":`...)
	dst = appendJSONString(dst, []byte(endpoint))
	dst = append(dst, `,"peer":`...)
	dst = appendJSONString(dst, []byte(r.Peer))
	var topic []byte
	body := r.Frames
	if len(r.Frames) > 1 {
		topic, body = r.Frames[0], r.Frames[1:]
	}
	dst = appendJSONField(dst, "topic", topic)
	var msg []byte
	switch len(body) {
	case 0:
	case 1:
		msg = body[0]
	default:
		for i, f := range body {
			if i > 0 {
				msg = append(msg, '\t')
			}
			msg = append(msg, f...)
		}
	}
	dst = appendJSONField(dst, "message", msg)
	if r.Truncated {
		dst = append(dst, `,"truncated":true`...)
	}
	return append(dst, '}', '\n')
}

func appendJSONField(dst []byte, name string, v []byte) []byte {
	return AppendJSONField(append(dst, ','), name, v)
}

// AppendJSONField appends "name":"v" as a JSON line of the daemon has it:
// a value that is not valid UTF-8 as "name_base64":"..." instead.
func AppendJSONField(dst []byte, name string, v []byte) []byte {
	dst = append(dst, '"')
	dst = append(dst, name...)
	if utf8.Valid(v) {
		dst = append(dst, '"', ':')
		return appendJSONString(dst, v)
	}
	dst = append(dst, `_base64":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, v)
	return append(dst, '"')
}

// appendJSONString writes valid UTF-8 s as a JSON string.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i, c := range s {
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7F {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
