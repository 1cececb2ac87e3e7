package sink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// A compressed backup ends with the span of its lines' times: the lowest
// and the highest, whatever their order (the wall clock can step back).
// A reader looking for a window skips a backup whose span misses it
// without decompressing it. The span is a frame every decoder passes
// over: a zstd skippable frame, or an empty gzip member whose header
// carries it in an extra field (gzip readers read concatenated members).
//
//	gzip: 1F 8B 08 04 00000000 00 FF | XLEN 24 | 'A' 'T' | LEN 20 | version 1 | low (LE64 ns) | high | 03 00 | CRC 0 | ISIZE 0
//
// A zstd backup's trailer also spans each of its frames (see
// appendFrameIndex), so that a window reads only the frames it meets.
const (
	spanVersion   = 1
	gzipSpanBytes = 46
)

// appendSpan appends the span member of a gzip backup.
func appendSpan(dst []byte, low, high int64) []byte {
	le := binary.LittleEndian
	dst = append(dst, 0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff)
	dst = le.AppendUint16(dst, 24)
	dst = append(dst, 'A', 'T')
	dst = le.AppendUint16(dst, 20)
	dst = le.AppendUint32(dst, spanVersion)
	dst = le.AppendUint64(dst, uint64(low))
	dst = le.AppendUint64(dst, uint64(high))
	dst = append(dst, 3, 0)                // an empty final deflate block
	return append(dst, make([]byte, 8)...) // CRC-32 and size of nothing
}

// BackupSpan reads the span of the times of a compressed backup's lines;
// ok is false when the backup has none (written before spans were, or not
// compressed).
func BackupSpan(name string) (low, high time.Time, ok bool) {
	switch {
	case strings.HasSuffix(name, ".zst"):
		f, err := os.Open(name)
		if err != nil {
			return low, high, false
		}
		defer f.Close()
		lo, hi, _, ok := readFrameIndex(f)
		return time.Unix(0, lo), time.Unix(0, hi), ok
	case !strings.HasSuffix(name, ".gz"):
		return low, high, false
	}
	f, err := os.Open(name)
	if err != nil {
		return low, high, false
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || info.Size() < gzipSpanBytes {
		return low, high, false
	}
	tail := make([]byte, gzipSpanBytes)
	if _, err := f.ReadAt(tail, info.Size()-gzipSpanBytes); err != nil {
		return low, high, false
	}
	le := binary.LittleEndian
	if !bytes.Equal(tail[:4], []byte{0x1f, 0x8b, 8, 4}) || le.Uint16(tail[10:]) != 24 || tail[12] != 'A' || tail[13] != 'T' || le.Uint16(tail[14:]) != 20 {
		return low, high, false
	}
	data := tail[16:36]
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
	// The lowest and highest stamp of the daemon's UTC form (they
	// compare as bytes), parsed only at the end: most lines cost a
	// comparison, not a parse.
	lowStamp, highStamp [utcStampLen]byte
	stamps              bool
}

// utcStampLen is the length of a text line's stamp in UTC:
// 2006-01-02T15:04:05.000000Z.
const utcStampLen = 27

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

// flush takes the last line, when the file does not end with a newline,
// and the stamps compared as bytes into the span.
func (s *spanScanner) flush() {
	if len(s.carry) > 0 {
		s.line(s.carry)
		s.carry = s.carry[:0]
	}
	if s.stamps {
		s.stamps = false
		for _, st := range [][]byte{s.lowStamp[:], s.highStamp[:]} {
			if t, ok := parseStamp(st); ok {
				s.add(t)
			}
		}
	}
}

func (s *spanScanner) line(line []byte) {
	if len(line) > utcStampLen && line[utcStampLen] == ' ' && utcStampShape(line[:utcStampLen]) {
		st := line[:utcStampLen]
		if !s.stamps {
			copy(s.lowStamp[:], st)
			copy(s.highStamp[:], st)
			s.stamps = true
		} else if bytes.Compare(st, s.lowStamp[:]) < 0 {
			copy(s.lowStamp[:], st)
		} else if bytes.Compare(st, s.highStamp[:]) > 0 {
			copy(s.highStamp[:], st)
		}
		return
	}
	t, ok := LineTime(line)
	if ok {
		s.add(t)
	}
}

// utcStampShape reports whether st has the shape of a UTC stamp of the
// daemon's, 2006-01-02T15:04:05.000000Z, so that it orders as bytes.
func utcStampShape(st []byte) bool {
	if len(st) != utcStampLen || st[4] != '-' || st[7] != '-' || st[10] != 'T' || st[13] != ':' || st[16] != ':' || st[19] != '.' || st[26] != 'Z' {
		return false
	}
	for _, i := range [...]int{0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25} {
		if st[i]-'0' > 9 {
			return false
		}
	}
	return true
}

func (s *spanScanner) add(t int64) {
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

// frameBytes is how much of a backup one zstd frame holds: a window reads
// only the frames whose lines' times it meets (see OpenWindow).
const frameBytes = 4 << 20

// frameSpan is one zstd frame of a backup: where it is in the compressed
// file and the span of its lines' times.
type frameSpan struct {
	offset, end int64
	low, high   int64
	seen        bool
}

// counter counts what is written through it.
type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// compressFramed compresses src through zw into dst, a zstd frame per
// frameBytes of whole lines (one gzip member in all), and returns the
// trailer to append: the span of the lines' times, and for zstd each
// frame's.
func compressFramed(zw io.WriteCloser, dst io.Writer, codec Codec, src io.Reader) ([]byte, error) {
	var frame spanScanner
	var frames []frameSpan
	cw := &counter{w: dst}
	enc, framed := zw.(*zstd.Encoder)
	if framed {
		enc.Reset(cw)
	} else if gz, ok := zw.(*gzip.Writer); ok {
		gz.Reset(cw)
	}
	start, in := int64(0), 0
	endFrame := func() {
		frame.flush()
		frames = append(frames, frameSpan{offset: start, end: cw.n, low: frame.low, high: frame.high, seen: frame.seen})
		frame = spanScanner{}
		start, in = cw.n, 0
	}
	buf := make([]byte, 256<<10)
	for {
		n, rerr := src.Read(buf)
		chunk := buf[:n]
		for len(chunk) > 0 {
			take := len(chunk)
			cut := false
			if framed && in+take >= frameBytes {
				if i := bytes.IndexByte(chunk[max(0, frameBytes-in):], '\n'); i >= 0 {
					take, cut = max(0, frameBytes-in)+i+1, true
				}
			}
			if _, err := zw.Write(chunk[:take]); err != nil {
				return nil, err
			}
			frame.Write(chunk[:take])
			in += take
			chunk = chunk[take:]
			if cut {
				if err := zw.Close(); err != nil {
					return nil, err
				}
				endFrame()
				enc.Reset(cw)
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, rerr
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if in > 0 || len(frames) == 0 {
		endFrame()
	}
	// The whole file's span is its frames'.
	var whole spanScanner
	for _, f := range frames {
		if f.seen {
			whole.add(f.low)
			whole.add(f.high)
		}
	}
	if !whole.seen {
		return nil, nil
	}
	if !framed {
		return appendSpan(nil, whole.low, whole.high), nil
	}
	return appendFrameIndex(whole.low, whole.high, frames), nil
}

// appendFrameIndex is the zstd trailer: a skippable frame that holds the
// span of the whole backup and of each frame, and ends with its own
// length and "AGGT", so that a reader finds it from the file's end.
//
//	5A 2A 4D 18 | size (LE32) | "AGGT" | version 2 | low | high | count (LE32) | count × (offset, end, low, high) (LE64) | frame length (LE32) | "AGGT"
func appendFrameIndex(low, high int64, frames []frameSpan) []byte {
	le := binary.LittleEndian
	payload := []byte("AGGT")
	payload = le.AppendUint32(payload, 2)
	payload = le.AppendUint64(payload, uint64(low))
	payload = le.AppendUint64(payload, uint64(high))
	payload = le.AppendUint32(payload, uint32(len(frames)))
	for _, f := range frames {
		if !f.seen { // no line with a time: any window may want it
			f.low, f.high = math.MinInt64, math.MaxInt64
		}
		payload = le.AppendUint64(payload, uint64(f.offset))
		payload = le.AppendUint64(payload, uint64(f.end))
		payload = le.AppendUint64(payload, uint64(f.low))
		payload = le.AppendUint64(payload, uint64(f.high))
	}
	total := 8 + len(payload) + 8
	payload = le.AppendUint32(payload, uint32(total))
	payload = append(payload, "AGGT"...)
	out := le.AppendUint32(nil, 0x184D2A5A)
	out = le.AppendUint32(out, uint32(len(payload)))
	return append(out, payload...)
}

// readFrameIndex reads a .zst backup's trailer.
func readFrameIndex(f *os.File) (low, high int64, frames []frameSpan, ok bool) {
	info, err := f.Stat()
	if err != nil || info.Size() < 8 {
		return 0, 0, nil, false
	}
	le := binary.LittleEndian
	foot := make([]byte, 8)
	if _, err := f.ReadAt(foot, info.Size()-8); err != nil || string(foot[4:]) != "AGGT" {
		return 0, 0, nil, false
	}
	total := int64(le.Uint32(foot))
	if total < 8+4+4+16+4+8 || total > info.Size() {
		return 0, 0, nil, false
	}
	b := make([]byte, total)
	if _, err := f.ReadAt(b, info.Size()-total); err != nil {
		return 0, 0, nil, false
	}
	if le.Uint32(b) != 0x184D2A5A || int64(le.Uint32(b[4:])) != total-8 || string(b[8:12]) != "AGGT" || le.Uint32(b[12:]) != 2 {
		return 0, 0, nil, false
	}
	low, high = int64(le.Uint64(b[16:])), int64(le.Uint64(b[24:]))
	count := int(le.Uint32(b[32:]))
	if 36+count*32+8 != int(total) {
		return 0, 0, nil, false
	}
	for i := range count {
		e := b[36+i*32:]
		frames = append(frames, frameSpan{offset: int64(le.Uint64(e)), end: int64(le.Uint64(e[8:])),
			low: int64(le.Uint64(e[16:])), high: int64(le.Uint64(e[24:])), seen: true})
	}
	return low, high, frames, true
}

// OpenWindow opens a file of a log for the lines of the window [since,
// until) (a zero bound is open): of a zstd backup with a frame index,
// only the frames whose lines' times meet the window are read; any other
// file is read whole.
func OpenWindow(name string, since, until time.Time) (io.ReadCloser, error) {
	if !strings.HasSuffix(name, ".zst") || (since.IsZero() && until.IsZero()) {
		return Open(name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	_, _, frames, ok := readFrameIndex(f)
	if !ok {
		f.Close()
		return Open(name)
	}
	var parts []io.Reader
	for _, fr := range frames {
		if (!since.IsZero() && fr.high < since.UnixNano()) || (!until.IsZero() && fr.low >= until.UnixNano()) {
			continue
		}
		parts = append(parts, io.NewSectionReader(f, fr.offset, fr.end-fr.offset))
	}
	return decompressing(name, io.MultiReader(parts...), f)
}
