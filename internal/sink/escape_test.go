package sink

import (
	"bytes"
	"testing"
)

func TestAppendEscaped(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "hello world", "hello world"},
		{"empty", "", ""},
		{"newline", "a\nb", `a\nb`},
		{"crlf", "a\r\nb", `a\r\nb`},
		{"tab", "a\tb", `a\tb`},
		{"backslash", `C:\dir`, `C:\\dir`},
		{"escape-looking text", `\n`, `\\n`},
		{"nul and bell", "\x00\x07", `\x00\x07`},
		{"del", "\x7f", `\x7f`},
		{"utf8 kept", "grüße 日本", "grüße 日本"},
		{"invalid utf8", "a\xffb\xc3", `a\xffb\xc3`},
		{"surrogate half", "\xed\xa0\x80", `\xed\xa0\x80`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendEscaped(nil, []byte(tt.in)))
			if got != tt.want {
				t.Fatalf("AppendEscaped(%q) = %q, want %q", tt.in, got, tt.want)
			}
			back, err := Unescape([]byte(got))
			if err != nil || string(back) != tt.in {
				t.Fatalf("Unescape(%q) = %q, %v; want %q", got, back, err, tt.in)
			}
		})
	}
}

func TestUnescapeRejectsWhatEscapeNeverWrites(t *testing.T) {
	for _, in := range []string{`\`, `\q`, `\x4`, `\x4g`, `\xAB`} {
		if _, err := Unescape([]byte(in)); err == nil {
			t.Errorf("Unescape(%q): want error", in)
		}
	}
}

// FuzzEscape checks the two promises of the text format: one message is
// one line, and the bytes come back exactly.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "hello", "a\nb\r\n", "\x00\xff\\x", "日本\xe6\x97", "\t\\t"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := AppendEscaped(nil, in)
		if i := bytes.IndexAny(out, "\n\r\t"); i >= 0 {
			t.Fatalf("escaped %q contains raw control byte at %d: %q", in, i, out)
		}
		back, err := Unescape(out)
		if err != nil {
			t.Fatalf("Unescape(%q): %v", out, err)
		}
		if !bytes.Equal(back, in) {
			t.Fatalf("round trip of %q gave %q", in, back)
		}
	})
}

// TestPlainWord checks the eight-bytes-at-once test against the byte table
// for every byte value in every position.
func TestPlainWord(t *testing.T) {
	for pos := range 8 {
		for c := range 256 {
			word := []byte("abcdefgh")
			word[pos] = byte(c)
			want := true
			for _, b := range word {
				want = want && plain[b]
			}
			if got := plainRun(word) == 8; got != want {
				t.Fatalf("byte %#x at %d: plain %v, want %v", c, pos, got, want)
			}
		}
	}
}

func BenchmarkAppendEscaped(b *testing.B) {
	msg := []byte("03 0000012345 1795577526900810030 lower case of HeLLo is hello, a typical log line of about 100 bytes")
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		buf = AppendEscaped(buf[:0], msg)
	}
}
