package sink

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

// The text escaping keeps every message on one line and is reversible:
//
//	\      -> \\
//	LF CR TAB -> \n \r \t
//	other bytes 0x00-0x1F and 0x7F -> \xHH
//	each byte of invalid UTF-8 -> \xHH
//
// Valid UTF-8 text, including non-ASCII, is written as it is. Every
// backslash in the output starts an escape, so Unescape restores the exact
// bytes. A raw TAB never appears inside an escaped frame, which is what
// lets the text format join the frames of a multipart message with one.

// plain[c] is true for ASCII bytes that are copied as they are.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7F; c++ {
		t[c] = c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// SWAR constants: eight bytes tested at once.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plainWord reports whether all eight bytes of w are plain ASCII: none
// below 0x20, none with the high bit set, no DEL and no backslash.
func plainWord(w uint64) bool {
	// A byte is zero in x exactly where (x-1) borrows into its high bit
	// while the byte itself had it clear: (x - lsb) &^ x & msb.
	less := (w - lsb*0x20) &^ w // high bit where a byte < 0x20
	del := w ^ (lsb * 0x7F)     // zero byte where w has DEL
	bs := w ^ (lsb * '\\')      // zero byte where w has a backslash
	del = (del - lsb) &^ del
	bs = (bs - lsb) &^ bs
	return (w|less|del|bs)&msb == 0 // w&msb: any byte >= 0x80
}

// plainRun is the length of the run of plain ASCII at the start of src,
// tested eight bytes at a time: most log text is nothing else.
func plainRun(src []byte) int {
	j := 0
	for ; j+8 <= len(src); j += 8 {
		if !plainWord(binary.LittleEndian.Uint64(src[j:])) {
			break
		}
	}
	for j < len(src) && plain[src[j]] {
		j++
	}
	return j
}

// AppendEscaped appends the escaped form of src to dst.
func AppendEscaped(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		// Copy the longest run of plain ASCII in one go: the common case.
		j := i + plainRun(src[i:])
		dst = append(dst, src[i:j]...)
		if j == len(src) {
			break
		}
		i = j
		c := src[i]
		switch {
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
			} else {
				dst = append(dst, src[i:i+size]...)
			}
			i += size
			continue
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
		}
		i++
	}
	return dst
}

// ErrBadEscape is returned by Unescape for input AppendEscaped cannot have
// produced.
var ErrBadEscape = errors.New("bad escape sequence")

// Unescape reverses AppendEscaped.
func Unescape(src []byte) ([]byte, error) {
	dst := make([]byte, 0, len(src))
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		if i+1 >= len(src) {
			return nil, ErrBadEscape
		}
		i++
		switch src[i] {
		case '\\':
			dst = append(dst, '\\')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'x':
			if i+2 >= len(src) {
				return nil, ErrBadEscape
			}
			hi, ok1 := unhex(src[i+1])
			lo, ok2 := unhex(src[i+2])
			if !ok1 || !ok2 {
				return nil, ErrBadEscape
			}
			dst = append(dst, hi<<4|lo)
			i += 2
		default:
			return nil, ErrBadEscape
		}
	}
	return dst, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
