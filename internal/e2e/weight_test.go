package e2e

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// load is one request a page made for a static file, as Chromium's network
// events tell it.
type load struct {
	url      string
	typ      network.ResourceType
	wire     int64   // as the server sent it (304 for a revalidated file), from responseReceivedExtraInfo
	extra    bool    // a responseReceivedExtraInfo is coming
	encoding string  // Content-Encoding
	bytes    float64 // on the wire, headers included (loadingFinished.encodedDataLength)
	cached   bool    // answered by the browser's cache, no request sent
	done     bool    // loadingFinished or loadingFailed seen
}

// netLog records the loads of one tab from its network events.
type netLog struct {
	mu    sync.Mutex
	loads map[network.RequestID]*load
	order []network.RequestID
}

func (n *netLog) get(id network.RequestID) *load {
	l := n.loads[id]
	if l == nil {
		l = &load{}
		n.loads[id] = l
		n.order = append(n.order, id)
	}
	return l
}

// event takes one network event (it runs on chromedp's reading goroutine:
// quick, no commands).
func (n *netLog) event(ev any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		l := n.get(e.RequestID)
		l.url, l.typ = e.Request.URL, e.Type
	case *network.EventRequestServedFromCache:
		n.get(e.RequestID).cached = true
	case *network.EventResponseReceived:
		l := n.get(e.RequestID)
		l.typ, l.extra = e.Type, e.HasExtraInfo
		l.cached = l.cached || e.Response.FromDiskCache || e.Response.FromPrefetchCache
		for k, v := range e.Response.Headers {
			if strings.EqualFold(k, "Content-Encoding") {
				l.encoding = fmt.Sprint(v)
			}
		}
	case *network.EventResponseReceivedExtraInfo:
		n.get(e.RequestID).wire = e.StatusCode
	case *network.EventLoadingFinished:
		l := n.get(e.RequestID)
		l.bytes, l.done = e.EncodedDataLength, true
	case *network.EventLoadingFailed:
		n.get(e.RequestID).done = true
	}
}

// take returns the static-file loads recorded since the last take (pages,
// scripts, style sheets, images: not the API or the WebSocket) and forgets
// them; ok is false while one of them has not finished.
func (n *netLog) take(final bool) (loads []load, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, id := range n.order {
		l := n.loads[id]
		if l.url == "" || !static(l.url) {
			continue
		}
		if !l.done || (l.extra && l.wire == 0) {
			return nil, false
		}
		loads = append(loads, *l)
	}
	if final {
		n.loads, n.order = map[network.RequestID]*load{}, nil
	}
	return loads, true
}

// static: a page, or a file under the content-addressed prefix, or a
// plain-path script, style sheet or image.
func static(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || !strings.HasPrefix(u.Scheme, "http") {
		return false
	}
	p := u.Path
	return p == "/" || strings.HasPrefix(p, "/r/") || strings.HasPrefix(p, "/s/") || strings.HasPrefix(p, "/vendor/") ||
		strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".css") || strings.HasSuffix(p, ".svg")
}

// visit navigates to page, waits for what shows it is ready and for every
// static load it started to finish, and returns those loads.
func (n *netLog) visit(b *browser, page, ready string) []load {
	b.t.Helper()
	n.take(true)
	b.do(20*time.Second, chromedp.Navigate(b.env.url+page))
	b.waitFor(15*time.Second, page+" ready", ready)
	// The window's load event comes after every file it waited for; the
	// files the scripts add later are finished when their events say so.
	b.waitFor(15*time.Second, page+" loaded", `document.readyState === 'complete'`)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if loads, ok := n.take(false); ok {
			n.take(true)
			return loads
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: static loads still going after 15 s", page)
		}
		select {
		case <-b.ctx.Done():
			b.t.Fatal(b.ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func describe(loads []load) string {
	sorted := append([]load(nil), loads...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].bytes > sorted[j].bytes })
	var s strings.Builder
	for _, l := range sorted {
		u, _ := url.Parse(l.url)
		from := strconv.Itoa(int(l.wire))
		if l.cached {
			from = "cache"
		}
		fmt.Fprintf(&s, "\n  %6.0f B  %-5s %-4s %-10s %s", l.bytes, from, l.encoding, l.typ, u.Path)
	}
	return s.String()
}

// TestPageWeight (issue #13's performance budget, measured in Chromium): a
// first visit to the home page moves at most 40 KB (everything, headers
// included), to the call page at most 60 KB of JavaScript; a second visit
// sends no request for a content-addressed file and only conditional ones
// (304) for the rest.
func TestPageWeight(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct {
		page, ready string
		js          bool // only scripts count
		budget      float64
	}{
		{"/", `document.querySelector('#create')`, false, 40_000},
		{"/r/x", `document.querySelector('#join')`, true, 60_000},
	} {
		b := e.launch("Wei") // a new profile: an empty cache
		n := &netLog{loads: map[network.RequestID]*load{}}
		if err := chromedp.Listen(b.ctx, n.event); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Call(b.ctx, network.Enable, network.EnableParams{}); err != nil {
			t.Fatal(err)
		}
		first := n.visit(b, c.page, c.ready)
		var total, all float64
		fetched := map[string]bool{}
		for _, l := range first {
			fetched[l.url] = fetched[l.url] || !l.cached
		}
		for _, l := range first {
			// A file named twice (the favicon: the tab's icon and a CSS
			// background) comes once from the server and once from memory.
			if (!l.cached && l.wire != 200) || !fetched[l.url] {
				t.Errorf("%s, first visit: %s came %d, cached=%v", c.page, l.url, l.wire, l.cached)
			}
			all += l.bytes
			if !c.js || l.typ == network.ResourceTypeScript {
				total += l.bytes
			}
		}
		what := "in all"
		if c.js {
			what = "of JavaScript"
		}
		if total > c.budget || len(first) < 3 {
			t.Errorf("%s, first visit: %.0f bytes %s, budget %.0f (%d files):%s", c.page, total, what, c.budget, len(first), describe(first))
		} else {
			t.Logf("%s, first visit: %.0f bytes %s (%.0f in all, %d files), budget %.0f:%s", c.page, total, what, all, len(first), c.budget, describe(first))
		}

		// Again, as a person coming back would (via another page, so that
		// it is a new navigation, not a reload).
		b.do(10*time.Second, chromedp.Navigate("about:blank"))
		again := n.visit(b, c.page, c.ready)
		var sent float64
		requests := 0
		for _, l := range again {
			if l.cached {
				continue
			}
			requests++
			sent += l.bytes
			u, _ := url.Parse(l.url)
			switch {
			case strings.HasPrefix(u.Path, "/s/"):
				t.Errorf("%s, second visit: asked for content-addressed %s (%d)", c.page, u.Path, l.wire)
			case l.wire != 304:
				t.Errorf("%s, second visit: %s came %d, not 304", c.page, u.Path, l.wire)
			}
		}
		t.Logf("%s, second visit: %d requests, %.0f bytes:%s", c.page, requests, sent, describe(again))
	}
}
