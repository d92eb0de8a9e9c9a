// Package redact keeps the secrets URLs carry (passwords, stream keys,
// tokens) out of logs, statuses and API answers: camera sources and
// restreaming destinations are shown through it.
package redact

import (
	"net/url"
	"slices"
	"strings"
)

// Mask is what a secret is shown as.
const Mask = "xxxxx"

// URL is raw fit for logs, answers and metrics: the password, if any,
// replaced by Mask, and with keys set, every query value and, for
// rtmp:// and rtmps:// URLs, the last path element (the stream key) too.
// A string that does not parse is not shown.
func URL(raw string, keys bool) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not a URL)"
	}
	if !keys {
		return u.Redacted()
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Mask)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k, v := range q {
			for i := range v {
				v[i] = Mask
			}
			q[k] = v
		}
		u.RawQuery = q.Encode()
	}
	if streamKey(u) != "" {
		i := strings.LastIndexByte(u.Path, '/')
		u.Path, u.RawPath = u.Path[:i+1]+Mask, ""
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// minSecret is the shortest key or query value Text removes: shorter ones
// ("d" in rtmp://host/live/d) are names more likely than secrets, and
// removing them would garble the text. Passwords go at any length.
const minSecret = 4

// Text removes from msg every secret of raw (as URL with keys hides
// them), plain or escaped: a library may quote the URL it was given.
func Text(msg, raw string) string {
	var pw string
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		pw, _ = u.User.Password()
	}
	for _, s := range Secrets(raw) {
		if len(s) < minSecret && s != pw {
			continue
		}
		msg = strings.ReplaceAll(msg, s, Mask)
		if esc := url.QueryEscape(s); esc != s {
			msg = strings.ReplaceAll(msg, esc, Mask)
		}
		if esc := url.PathEscape(s); esc != s {
			msg = strings.ReplaceAll(msg, esc, Mask)
		}
	}
	return msg
}

// Secrets lists the secrets of raw: its password, query values and (for
// RTMP) stream key, longest first so that none hides part of another.
func Secrets(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	if u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			out = append(out, p)
		}
	}
	for _, v := range u.Query() {
		for _, s := range v {
			if s != "" {
				out = append(out, s)
			}
		}
	}
	if k := streamKey(u); k != "" {
		out = append(out, k)
	}
	if u.Fragment != "" {
		out = append(out, u.Fragment)
	}
	// Longest first: a short secret inside a long one must not leave the
	// rest of the long one readable.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// streamKey is an RTMP URL's last path element, "" for other schemes or
// a path of one element (rtmp://host/app has no key in its path).
func streamKey(u *url.URL) string {
	if u.Scheme != "rtmp" && u.Scheme != "rtmps" {
		return ""
	}
	p := strings.TrimPrefix(u.Path, "/")
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[i+1:]
}
