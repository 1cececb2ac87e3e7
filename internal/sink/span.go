package sink

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"strings"
	"time"
)

// A compressed backup ends with the span of its lines' times: the lowest
// and the highest, whatever their order (the wall clock can step back).
// A reader looking for a window skips a backup whose span misses it
// without decompressing it. The span is a frame every decoder passes
// over: a zstd skippable frame, or an empty gzip member whose header
// carries it in an extra field (gzip readers read concatenated members).
//
//	zstd: 5A 2A 4D 18 | size 24 (LE32) | "AGGT" | version 1 (LE32) | low (LE64 ns) | high (LE64 ns)
//	gzip: 1F 8B 08 04 00000000 00 FF | XLEN 24 | 'A' 'T' | LEN 20 | version 1 | low | high | 03 00 | CRC 0 | ISIZE 0
const (
	spanVersion   = 1
	zstdSpanBytes = 32
	gzipSpanBytes = 46
)

// appendSpan appends the span frame of codec.
func appendSpan(dst []byte, codec Codec, low, high int64) []byte {
	le := binary.LittleEndian
	if codec == Zstd {
		dst = le.AppendUint32(dst, 0x184D2A5A)
		dst = le.AppendUint32(dst, 24)
		dst = append(dst, "AGGT"...)
	} else {
		dst = append(dst, 0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff)
		dst = le.AppendUint16(dst, 24)
		dst = append(dst, 'A', 'T')
		dst = le.AppendUint16(dst, 20)
	}
	dst = le.AppendUint32(dst, spanVersion)
	dst = le.AppendUint64(dst, uint64(low))
	dst = le.AppendUint64(dst, uint64(high))
	if codec != Zstd {
		dst = append(dst, 3, 0)               // an empty final deflate block
		dst = append(dst, make([]byte, 8)...) // CRC-32 and size of nothing
	}
	return dst
}

// BackupSpan reads the span of the times of a compressed backup's lines;
// ok is false when the backup has none (written before spans were, or not
// compressed).
func BackupSpan(name string) (low, high time.Time, ok bool) {
	var size int
	var codec Codec
	switch {
	case strings.HasSuffix(name, ".zst"):
		size, codec = zstdSpanBytes, Zstd
	case strings.HasSuffix(name, ".gz"):
		size, codec = gzipSpanBytes, Gzip
	default:
		return low, high, false
	}
	f, err := os.Open(name)
	if err != nil {
		return low, high, false
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || info.Size() < int64(size) {
		return low, high, false
	}
	tail := make([]byte, size)
	if _, err := f.ReadAt(tail, info.Size()-int64(size)); err != nil {
		return low, high, false
	}
	le := binary.LittleEndian
	var data []byte
	if codec == Zstd {
		if le.Uint32(tail) != 0x184D2A5A || le.Uint32(tail[4:]) != 24 || string(tail[8:12]) != "AGGT" {
			return low, high, false
		}
		data = tail[12:]
	} else {
		if !bytes.Equal(tail[:4], []byte{0x1f, 0x8b, 8, 4}) || le.Uint16(tail[10:]) != 24 || tail[12] != 'A' || tail[13] != 'T' || le.Uint16(tail[14:]) != 20 {
			return low, high, false
		}
		data = tail[16:36]
	}
	if le.Uint32(data) != spanVersion {
		return low, high, false
	}
	return time.Unix(0, int64(le.Uint64(data[4:]))), time.Unix(0, int64(le.Uint64(data[12:]))), true
}

// spanScanner finds the span of the times of the lines written through
// it (the compressor tees a backup through it).
type spanScanner struct {
	low, high int64
	seen      bool
	carry     []byte // the start of a line the last write cut
}

func (s *spanScanner) Write(p []byte) (int, error) {
	n := len(p)
	if len(s.carry) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(s.carry) < 256 { // the time is at a line's start
				s.carry = append(s.carry, p...)
			}
			return n, nil
		}
		s.line(append(s.carry, p[:i]...))
		s.carry, p = s.carry[:0], p[i+1:]
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.carry = append(s.carry[:0], p[:min(len(p), 256)]...)
			break
		}
		s.line(p[:i])
		p = p[i+1:]
	}
	return n, nil
}

// flush takes the last line, when the file does not end with a newline.
func (s *spanScanner) flush() {
	if len(s.carry) > 0 {
		s.line(s.carry)
		s.carry = s.carry[:0]
	}
}

func (s *spanScanner) line(line []byte) {
	t, ok := LineTime(line)
	if !ok {
		return
	}
	if !s.seen || t < s.low {
		s.low = t
	}
	if !s.seen || t > s.high {
		s.high = t
	}
	s.seen = true
}

var _ io.Writer = (*spanScanner)(nil)

// LineTime is the receive time of one of the daemon's lines (text, JSON,
// a central's of either), in Unix nanoseconds.
func LineTime(line []byte) (int64, bool) {
	if len(line) > 0 && line[0] == '{' {
		i := bytes.Index(line, []byte(`"time":"`))
		if i < 0 {
			return 0, false
		}
		line = line[i+8:]
		end := bytes.IndexByte(line, '"')
		if end < 0 {
			return 0, false
		}
		return parseStamp(line[:end])
	}
	end := bytes.IndexByte(line, ' ')
	if end < 0 {
		return 0, false
	}
	return parseStamp(line[:end])
}

// parseStamp reads the daemon's RFC 3339 time (2006-01-02T15:04:05.999999
// then Z or ±07:00) without time.Parse's generality.
func parseStamp(b []byte) (int64, bool) {
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return 0, false
	}
	rest := b[19:]
	nsec := 0
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		frac, _ := num(rest[1:i])
		for d := i - 1; d < 9; d++ {
			frac *= 10
		}
		for d := i - 1; d > 9; d-- {
			frac /= 10
		}
		nsec, rest = frac, rest[i:]
	}
	offset := 0
	switch {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		h, ok1 := num(rest[1:3])
		m, ok2 := num(rest[4:6])
		if !ok1 || !ok2 {
			return 0, false
		}
		offset = (h*60 + m) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.UnixNano() - int64(offset)*int64(time.Second), true
}
