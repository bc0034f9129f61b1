package query

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokIdent
	tokNumber
	tokString
	tokPunct // * , . ( ) [ ] = != <> < <= > >=
)

// token is one lexeme. pos is its byte offset in the query text.
type token struct {
	kind tokenKind
	text string // source text (identifiers and punctuation as written)
	num  float64
	str  string // decoded string literal
	pos  int
}

// lexer splits query text into tokens on demand.
type lexer struct {
	src string
	off int
}

func isIdentStart(r rune) bool { return r == '_' || r == '$' || unicode.IsLetter(r) }
func isIdentPart(r rune) bool  { return isIdentStart(r) || unicode.IsDigit(r) }

// next returns the next token, or a syntax error naming where lexing failed.
func (l *lexer) next() (token, error) {
	for l.off < len(l.src) {
		r, n := utf8.DecodeRuneInString(l.src[l.off:])
		if !unicode.IsSpace(r) {
			break
		}
		l.off += n
	}
	start := l.off
	if start >= len(l.src) {
		return token{kind: tokEOF, pos: start}, nil
	}
	r, n := utf8.DecodeRuneInString(l.src[start:])
	switch {
	case isIdentStart(r):
		l.off += n
		for l.off < len(l.src) {
			r, n := utf8.DecodeRuneInString(l.src[l.off:])
			if !isIdentPart(r) {
				break
			}
			l.off += n
		}
		return token{kind: tokIdent, text: l.src[start:l.off], pos: start}, nil
	case r == '\'' || r == '"':
		return l.string(byte(r))
	case isDigit(r) || r == '-' || r == '.' && l.peekDigit(start+1):
		if r == '-' && !l.peekDigit(start+1) && !(l.at(start+1) == '.' && l.peekDigit(start+2)) {
			break
		}
		return l.number()
	}
	for _, p := range [...]string{"!=", "<>", "<=", ">=", "*", ",", ".", "(", ")", "[", "]", "=", "<", ">"} {
		if strings.HasPrefix(l.src[start:], p) {
			l.off += len(p)
			return token{kind: tokPunct, text: p, pos: start}, nil
		}
	}
	return token{}, syntaxError(l.src, start, string(r))
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' }

func (l *lexer) at(i int) byte {
	if i < len(l.src) {
		return l.src[i]
	}
	return 0
}

func (l *lexer) peekDigit(i int) bool { c := l.at(i); return c >= '0' && c <= '9' }

// number lexes an optionally negative decimal (with fraction and exponent)
// or 0x hexadecimal integer.
func (l *lexer) number() (token, error) {
	start := l.off
	i := start
	if l.at(i) == '-' {
		i++
	}
	if l.at(i) == '0' && (l.at(i+1) == 'x' || l.at(i+1) == 'X') {
		j := i + 2
		for isHex(l.at(j)) {
			j++
		}
		if j == i+2 {
			return token{}, syntaxError(l.src, start, l.src[start:j])
		}
		v, err := strconv.ParseUint(l.src[i+2:j], 16, 64)
		if err != nil {
			return token{}, syntaxError(l.src, start, l.src[start:j])
		}
		f := float64(v)
		if l.src[start] == '-' {
			f = -f
		}
		l.off = j
		return l.endNumber(start, f)
	}
	for l.peekDigit(i) {
		i++
	}
	if l.at(i) == '.' && l.peekDigit(i+1) {
		i++
		for l.peekDigit(i) {
			i++
		}
	}
	if c := l.at(i); c == 'e' || c == 'E' {
		j := i + 1
		if c := l.at(j); c == '+' || c == '-' {
			j++
		}
		if l.peekDigit(j) {
			for l.peekDigit(j) {
				j++
			}
			i = j
		}
	}
	f, err := strconv.ParseFloat(l.src[start:i], 64)
	if err != nil { // out of range
		return token{}, syntaxError(l.src, start, l.src[start:i])
	}
	l.off = i
	return l.endNumber(start, f)
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// endNumber rejects a number glued to an identifier ("12abc").
func (l *lexer) endNumber(start int, f float64) (token, error) {
	if l.off < len(l.src) {
		if r, _ := utf8.DecodeRuneInString(l.src[l.off:]); isIdentPart(r) {
			return token{}, syntaxError(l.src, start, l.src[start:l.off+1])
		}
	}
	return token{kind: tokNumber, text: l.src[start:l.off], num: f, pos: start}, nil
}

// string lexes a '…' or "…" literal with JSON-style escapes plus \'.
func (l *lexer) string(q byte) (token, error) {
	start := l.off
	var b strings.Builder
	i := start + 1
	for {
		if i >= len(l.src) {
			return token{}, syntaxError(l.src, start, l.src[start:])
		}
		c := l.src[i]
		switch {
		case c == q:
			l.off = i + 1
			return token{kind: tokString, text: l.src[start:l.off], str: b.String(), pos: start}, nil
		case c != '\\':
			b.WriteByte(c)
			i++
			continue
		}
		// An escape.
		e := l.at(i + 1)
		switch e {
		case '\'', '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if i+6 > len(l.src) {
				return token{}, syntaxError(l.src, i, l.src[i:])
			}
			v, err := strconv.ParseUint(l.src[i+2:i+6], 16, 16)
			if err != nil {
				return token{}, syntaxError(l.src, i, l.src[i:i+6])
			}
			r := rune(v)
			// A surrogate pair spells one code point; a lone surrogate
			// becomes U+FFFD, as encoding/json does.
			if utf16IsSurrogate(r) {
				r = utf8.RuneError
				if l.at(i+6) == '\\' && l.at(i+7) == 'u' && i+12 <= len(l.src) {
					if v2, err := strconv.ParseUint(l.src[i+8:i+12], 16, 16); err == nil {
						if p := decodeSurrogates(rune(v), rune(v2)); p != utf8.RuneError {
							r = p
							i += 6
						}
					}
				}
			}
			b.WriteRune(r)
			i += 6
			continue
		default:
			return token{}, syntaxError(l.src, i, l.src[i:min(i+2, len(l.src))])
		}
		i += 2
	}
}

func utf16IsSurrogate(r rune) bool { return r >= 0xd800 && r < 0xe000 }

func decodeSurrogates(r1, r2 rune) rune {
	if r1 >= 0xd800 && r1 < 0xdc00 && r2 >= 0xdc00 && r2 < 0xe000 {
		return (r1-0xd800)<<10 | (r2 - 0xdc00) + 0x10000
	}
	return utf8.RuneError
}
