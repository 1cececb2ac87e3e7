package route

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// AppendValue appends v to dst as text that is safe inside a file name and
// can be decoded back to v (DecodeValue):
//
//   - letters, digits and "_", "+", "@", "-" and "." stay as they are;
//   - every other byte is %XX (upper-case hex): "/", NUL, control bytes,
//     "%", spaces, and every byte of non-ASCII or invalid UTF-8;
//   - a leading "." is %2E, so no value is "." or ".." or hides its file;
//   - a "-" that starts what looks like a backup's time
//     ("-2006-01-02T") is %2D, so no value's file is taken for a backup
//     of another's;
//   - an empty value is "%" alone.
//
// An encoding longer than budget bytes is cut, and "~" and 16 hex digits
// of the value's SHA-256 end it: long values stay apart, and since "~"
// is always encoded, a cut value never meets an uncut one.
func AppendValue[T string | []byte](dst []byte, v T, budget int) []byte {
	if len(v) == 0 {
		return append(dst, '%')
	}
	start := len(dst)
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '.' && i == 0, c == '-' && looksLikeStamp(v[i+1:]), !plain(c):
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
		default:
			dst = append(dst, c)
		}
	}
	if len(dst)-start <= budget {
		return dst
	}
	const mark = 1 + 16 // "~" and the digest's hex
	keep := max(budget-mark, 0)
	switch { // never cut inside a %XX
	case keep >= 1 && dst[start+keep-1] == '%':
		keep--
	case keep >= 2 && dst[start+keep-2] == '%':
		keep -= 2
	}
	sum := sha256.Sum256([]byte(v))
	dst = append(dst[:start+keep], '~')
	return hex.AppendEncode(dst, sum[:8])
}

const hexDigits = "0123456789ABCDEF"

// plain reports whether c stands for itself in a file name.
func plain(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '+' || c == '@' || c == '-' || c == '.'
}

// looksLikeStamp reports whether s starts as lumberjack's backup time
// does after its "-": "2006-01-02T".
func looksLikeStamp[T string | []byte](s T) bool {
	const shape = "dddd-dd-ddT"
	if len(s) < len(shape) {
		return false
	}
	for i := range len(shape) {
		c := s[i]
		if shape[i] == 'd' && (c < '0' || c > '9') || shape[i] != 'd' && c != shape[i] {
			return false
		}
	}
	return true
}

// ErrNotAValue: the text is not what AppendValue writes for any value.
var ErrNotAValue = errors.New("not an encoded value")

// DecodeValue returns the value AppendValue encoded as s. A value that
// was cut (it ends in "~" and a digest) cannot be restored whole: its
// kept part is returned with cut set.
func DecodeValue(s string) (v []byte, cut bool, err error) {
	if s == "%" {
		return []byte{}, false, nil
	}
	if i := len(s) - 17; i >= 0 && s[i] == '~' {
		if _, err := hex.DecodeString(s[i+1:]); err == nil {
			s, cut = s[:i], true
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b, _ := hex.DecodeString(s[i+1 : i+3])
			v = append(v, b[0])
			i += 2
		case plain(c):
			v = append(v, c)
		default:
			return nil, false, ErrNotAValue
		}
	}
	return v, cut, nil
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }
