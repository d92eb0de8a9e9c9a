package push

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// MaxURL bounds a destination URL's length (YouTube's and Twitch's are
// under 100 characters; an SRT streamid may hold a token).
const MaxURL = 1024

// Check reports what is wrong with a destination URL; the error never
// contains the URL (it holds the stream key).
func Check(raw string) error {
	_, err := parse(raw)
	return err
}

// parse checks a destination: rtmp://, rtmps:// or srt://, a host, and
// for RTMP an app and a stream key (rtmp://host[:port]/app/key); for
// SRT caller mode only.
func parse(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("url is required (rtmp://, rtmps:// or srt://)")
	}
	if len(raw) > MaxURL {
		return nil, fmt.Errorf("url is over %d bytes", MaxURL)
	}
	if strings.ContainsAny(raw, " \t\r\n\x00") {
		return nil, errors.New("url contains spaces or control characters")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, errors.New("url does not parse")
	case u.Scheme != "rtmp" && u.Scheme != "rtmps" && u.Scheme != "srt":
		return nil, errors.New("url must be rtmp://, rtmps:// or srt://")
	case u.Opaque != "" || u.Hostname() == "":
		return nil, errors.New("url has no host")
	case u.Port() != "" && !validPort(u.Port()):
		return nil, errors.New("url has a bad port")
	case u.Fragment != "":
		return nil, errors.New("url has a #fragment; put the stream key in the path")
	}
	if u.Scheme == "srt" {
		if u.Port() == "" {
			return nil, errors.New("an srt:// url needs a port")
		}
		if u.Path != "" && u.Path != "/" {
			return nil, errors.New("an srt:// url has no path; the stream goes in ?streamid=")
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return nil, errors.New("the srt:// url's query does not parse")
		}
		if m := q.Get("mode"); m != "" && m != "caller" {
			return nil, errors.New("only SRT caller mode is supported (mode=caller or none)")
		}
		return u, nil
	}
	app, key := splitRTMP(u)
	if app == "" || key == "" {
		return nil, errors.New("an rtmp url is rtmp://host[:port]/app/stream-key")
	}
	return u, nil
}

func validPort(p string) bool {
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return false
		}
	}
	return n > 0
}

// splitRTMP cuts rtmp://host/app[/more]/key into the app ("app/more")
// and the stream key (the last path element, with the query: encoders
// such as ffmpeg and OBS send "key?token=…" as the stream name).
func splitRTMP(u *url.URL) (app, key string) {
	p := strings.TrimPrefix(u.Path, "/")
	i := strings.LastIndexByte(p, '/')
	if i <= 0 || i == len(p)-1 {
		return "", ""
	}
	app, key = p[:i], p[i+1:]
	if u.RawQuery != "" {
		key += "?" + u.RawQuery
	}
	return app, key
}

// rtmpTarget is the URL gortmplib's client wants: the app in the path,
// the stream key in the fragment (it sends "connect" with the app and
// "publish" with the key).
func rtmpTarget(u *url.URL) *url.URL {
	app, key := splitRTMP(u)
	return &url.URL{Scheme: u.Scheme, Host: u.Host, User: u.User, Path: "/" + app, Fragment: key}
}
