package whip

import (
	"strings"

	"github.com/pion/webrtc/v4"
)

// LinkHeaders formats ICE servers as RFC 9725 Link header values, one per
// URL, as a server announces them.
func LinkHeaders(servers []webrtc.ICEServer) []string {
	var out []string
	for _, s := range servers {
		for _, u := range s.URLs {
			v := "<" + u + `>; rel="ice-server"`
			if cred, ok := s.Credential.(string); ok && s.Username != "" {
				v += "; username=" + quote(s.Username) + "; credential=" + quote(cred) + `; credential-type="password"`
			}
			out = append(out, v)
		}
	}
	return out
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// ParseLinkHeaders reads the ICE servers (rel="ice-server") out of Link
// header values; other links and malformed values are skipped. A header
// value may hold several comma-separated links.
func ParseLinkHeaders(values []string) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, v := range values {
		for _, l := range splitLinks(v) {
			if s, ok := parseLink(l); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// splitLinks splits a header value at commas outside <...> and quotes.
func splitLinks(v string) []string {
	var out []string
	inURL, inQuote, esc, start := false, false, false, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case esc:
			esc = false
		case inQuote && c == '\\':
			esc = true
		case c == '"' && !inURL:
			inQuote = !inQuote
		case c == '<' && !inQuote:
			inURL = true
		case c == '>' && !inQuote:
			inURL = false
		case c == ',' && !inURL && !inQuote:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// parseLink reads `<url>; rel="ice-server"; username=...; credential=...`.
func parseLink(l string) (webrtc.ICEServer, bool) {
	var s webrtc.ICEServer
	l = strings.TrimSpace(l)
	if !strings.HasPrefix(l, "<") {
		return s, false
	}
	end := strings.IndexByte(l, '>')
	if end < 0 {
		return s, false
	}
	url, rest := l[1:end], l[end+1:]
	params := map[string]string{}
	for {
		rest = strings.TrimLeft(rest, " \t")
		if !strings.HasPrefix(rest, ";") {
			break
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		eq := strings.IndexAny(rest, "=;")
		if eq < 0 || rest[eq] == ';' {
			// A parameter without a value.
			name := rest
			if eq >= 0 {
				name = rest[:eq]
			}
			params[strings.ToLower(strings.TrimSpace(name))] = ""
			if eq < 0 {
				break
			}
			rest = rest[eq:]
			continue
		}
		name := strings.ToLower(strings.TrimSpace(rest[:eq]))
		val, after, ok := paramValue(rest[eq+1:])
		if !ok {
			return s, false
		}
		params[name] = val
		rest = after
	}
	isICE := false
	for _, r := range strings.Fields(params["rel"]) {
		if strings.EqualFold(r, "ice-server") {
			isICE = true
		}
	}
	if !isICE || url == "" {
		return s, false
	}
	s.URLs = []string{url}
	if u, ok := params["username"]; ok {
		s.Username = u
		s.Credential = params["credential"]
		s.CredentialType = webrtc.ICECredentialTypePassword
	}
	return s, true
}

// paramValue reads a token or a quoted string; it returns the value and
// what follows it.
func paramValue(s string) (string, string, bool) {
	s = strings.TrimLeft(s, " \t")
	if !strings.HasPrefix(s, `"`) {
		end := strings.IndexByte(s, ';')
		if end < 0 {
			end = len(s)
		}
		return strings.TrimSpace(s[:end]), s[end:], true
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}
