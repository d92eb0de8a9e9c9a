package show

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Mode is a show's look, shared by all its screens.
type Mode struct {
	Palette string  `json:"palette"`
	Color   string  `json:"color"`
	Gain    float64 `json:"gain"`
}

var defaultMode = Mode{Palette: "redblue", Color: "#ffffff", Gain: 1}

// ScreenInfo is one screen as hosts (and GET /api/shows/{name}) see it.
type ScreenInfo struct {
	ID     string `json:"id"`
	Label  string `json:"label"`
	Band   Band   `json:"band"`
	Index  int    `json:"index"`
	Level  int    `json:"level"`
	Online bool   `json:"online"`
	Manual bool   `json:"manual"` // band set by a host
}

// State is a snapshot of a show.
type State struct {
	Type    string       `json:"type,omitempty"` // "screens" when sent to hosts
	Name    string       `json:"name"`
	Stream  string       `json:"stream"`
	Screens []ScreenInfo `json:"screens"`
	Hosts   int          `json:"hosts"`
	Mode    Mode         `json:"mode"`
	Text    string       `json:"text"`
}

type screen struct {
	id, key, label string
	seq            int // join order
	band           Band
	manual         bool
	index, count   int
	level          int
	conn           *conn       // nil while offline (in grace)
	grace          *time.Timer // removal timer while offline
	graceGen       int
	sent           string // the last assign message sent, to skip repeats
	air            bool   // whether the screen was last told the audio is live
}

type show struct {
	reg  *Registry
	name string
	refs int // guarded by reg.mu

	mu      sync.Mutex
	screens []*screen // layout order
	hosts   map[*conn]bool
	seq     int
	mode    Mode
	text    string
}

func newShow(r *Registry, name string) *show {
	return &show{reg: r, name: name, hosts: map[*conn]bool{}, mode: defaultMode}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("show: encoding %T: %v", v, err)) // only fixed types are encoded
	}
	return b
}

// recompute assigns automatic bands across the screens without a
// hand-set band, in layout order, and tells every screen whose
// assignment changed. Called with sh.mu held.
func (sh *show) recompute() {
	auto := 0
	for _, s := range sh.screens {
		if !s.manual {
			auto++
		}
	}
	bands := Bands(auto, MinFreq, MaxFreq)
	k := 0
	for i, s := range sh.screens {
		if !s.manual {
			s.band = bands[k]
			k++
		}
		s.index, s.count = i, len(sh.screens)
		sh.sendAssign(s)
	}
	sh.hostsDirty()
}

func (sh *show) assignMsg(s *screen) []byte {
	band, idx, label := s.band, s.index, s.label
	return mustJSON(Msg{Type: TypeAssign, Screen: s.id, Band: &band, Index: &idx, Count: s.count, Label: &label})
}

// sendAssign tells a screen's writer that its assignment may have
// changed; the writer sends the latest one (see assignFor), so a storm of
// joins costs each screen one message, not one per join.
func (sh *show) sendAssign(s *screen) {
	if s.conn != nil {
		s.conn.markDirty()
	}
}

// assignFor returns the assign message for a screen connection, or nil
// when it has not changed since the last one sent (or c was replaced).
func (sh *show) assignFor(c *conn) []byte {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := c.scr
	if s == nil || s.conn != c {
		return nil
	}
	b := sh.assignMsg(s)
	if string(b) == s.sent {
		return nil
	}
	s.sent = string(b)
	return b
}

func (sh *show) hostsDirty() {
	for h := range sh.hosts {
		h.markDirty()
	}
}

// state snapshots the show. Called with sh.mu held.
func (sh *show) state() State {
	st := State{Name: sh.name, Stream: StreamName(sh.name), Screens: make([]ScreenInfo, 0, len(sh.screens)),
		Hosts: len(sh.hosts), Mode: sh.mode, Text: sh.text}
	for _, s := range sh.screens {
		st.Screens = append(st.Screens, ScreenInfo{ID: s.id, Label: s.label, Band: s.band, Index: s.index,
			Level: s.level, Online: s.conn != nil, Manual: s.manual})
	}
	return st
}

// Snapshot returns the show's state (locked).
func (sh *show) Snapshot() State {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.state()
}

func (sh *show) hostsMsg() []byte {
	st := sh.Snapshot()
	st.Type = TypeScreens
	return mustJSON(st)
}

func (sh *show) findID(id string) *screen {
	for _, s := range sh.screens {
		if s.id == id {
			return s
		}
	}
	return nil
}

// attachScreen adds a screen connection, resuming the screen with the
// same key if there is one. It returns whether a grace reference was
// taken over (the caller releases it).
func (sh *show) attachScreen(c *conn, key, label string, hello func(id, key string, audioLive bool) []byte) (resumedGrace bool, err error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.reg.closed.Load() {
		return false, errClosed
	}
	var s *screen
	if key != "" {
		for _, x := range sh.screens {
			if x.key == key {
				s = x
				break
			}
		}
	}
	if s == nil {
		if len(sh.screens) >= sh.reg.o.MaxScreens {
			return false, fmt.Errorf("show %s has the maximum of %d screens", sh.name, sh.reg.o.MaxScreens)
		}
		sh.seq++
		if key == "" {
			key = newKey()
		}
		s = &screen{id: fmt.Sprintf("s%d", sh.seq), key: key, seq: sh.seq, label: fmt.Sprintf("Screen %d", sh.seq)}
		sh.screens = append(sh.screens, s)
	} else {
		if s.conn != nil {
			s.conn.close(errReplaced)
		}
		if s.grace != nil {
			resumedGrace = s.grace.Stop()
			s.grace = nil
			s.graceGen++
		}
	}
	if label != "" {
		s.label = label
	}
	s.conn, s.sent, s.level = c, "", 0
	s.air = sh.reg.audioLive(sh.name)
	c.scr = s
	c.send(hello(s.id, s.key, s.air))
	c.send(mustJSON(sh.modeMsg()))
	if sh.text != "" {
		c.send(mustJSON(Msg{Type: TypeText, Text: &sh.text}))
	}
	sh.recompute()
	return resumedGrace, nil
}

// audioChanged sends {"type":"air"} to the online screens last told
// otherwise. The state is read under sh.mu, so the last change wins.
func (sh *show) audioChanged() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	live := sh.reg.audioLive(sh.name)
	var msg []byte
	for _, s := range sh.screens {
		if s.conn == nil || s.air == live {
			continue
		}
		if msg == nil {
			msg = mustJSON(map[string]any{"type": TypeAir, "live": live})
		}
		s.conn.send(msg)
		s.air = live
	}
}

func (sh *show) modeMsg() Msg {
	return Msg{Type: TypeMode, Palette: sh.mode.Palette, Color: sh.mode.Color, Gain: sh.mode.Gain}
}

// detachScreen handles a screen connection's end. It returns true when
// the caller's reference moved to a grace timer (so is not released now).
func (sh *show) detachScreen(c *conn) (kept bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := c.scr
	if s == nil || s.conn != c {
		return false // replaced by a newer connection
	}
	s.conn, s.level = nil, 0
	grace := sh.reg.o.Grace
	if grace > 0 && !sh.reg.closed.Load() {
		s.graceGen++
		gen := s.graceGen
		s.grace = time.AfterFunc(grace, func() { sh.expire(s, gen) })
		sh.hostsDirty()
		return true
	}
	sh.remove(s)
	return false
}

// expire removes a screen whose grace period ran out, then releases the
// reference the grace period held.
func (sh *show) expire(s *screen, gen int) {
	sh.mu.Lock()
	if s.graceGen == gen && s.conn == nil && !sh.reg.closed.Load() {
		s.grace = nil
		sh.remove(s)
	}
	sh.mu.Unlock()
	sh.reg.release(sh)
}

// remove drops a screen and recomputes bands. Called with sh.mu held.
func (sh *show) remove(s *screen) {
	if i := slices.Index(sh.screens, s); i >= 0 {
		sh.screens = slices.Delete(sh.screens, i, i+1)
		sh.recompute()
	}
}

func (sh *show) attachHost(c *conn, hello []byte) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.reg.closed.Load() {
		return errClosed
	}
	if len(sh.hosts) >= sh.reg.o.MaxHosts {
		return fmt.Errorf("show %s has the maximum of %d host pages", sh.name, sh.reg.o.MaxHosts)
	}
	sh.hosts[c] = true
	c.send(hello)
	sh.hostsDirty()
	return nil
}

func (sh *show) detachHost(c *conn) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	delete(sh.hosts, c)
	sh.hostsDirty()
}

// setLevel records a screen's reported level for the hosts.
func (sh *show) setLevel(c *conn, v int) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c.scr != nil && c.scr.conn == c && c.scr.level != v {
		c.scr.level = v
		sh.hostsDirty()
	}
}

// apply carries out a host's (or the broadcast endpoint's) validated
// message. It returns how many online screens were sent something.
func (sh *show) apply(m Msg) (int, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	switch m.Type {
	case TypeAssign:
		s := sh.findID(m.Screen)
		if s == nil {
			return 0, fmt.Errorf("no screen %q in show %s", m.Screen, sh.name)
		}
		if m.Band != nil {
			s.band, s.manual = *m.Band, true
		}
		if m.Label != nil {
			s.label = *m.Label
		}
		sh.recompute()
		return b2i(s.conn != nil), nil
	case TypeLayout:
		if m.Auto {
			slices.SortStableFunc(sh.screens, func(a, b *screen) int { return a.seq - b.seq })
			for _, s := range sh.screens {
				s.manual = false
			}
		} else {
			ordered := make([]*screen, 0, len(sh.screens))
			for _, id := range m.Order {
				if s := sh.findID(id); s != nil {
					ordered = append(ordered, s)
				}
			}
			for _, s := range sh.screens {
				if !slices.Contains(ordered, s) {
					ordered = append(ordered, s)
				}
			}
			sh.screens = ordered
		}
		sh.recompute()
		return sh.online(), nil
	case TypeMode:
		if m.Palette != "" {
			sh.mode.Palette = m.Palette
		}
		if m.Color != "" {
			sh.mode.Color = m.Color
		}
		if m.Gain != 0 {
			sh.mode.Gain = m.Gain
		}
		sh.hostsDirty()
		return sh.toScreens(mustJSON(sh.modeMsg())), nil
	case TypeFlash:
		return sh.toScreens(mustJSON(Msg{Type: TypeFlash, Color: m.Color, MS: m.MS})), nil
	case TypeText:
		sh.text = *m.Text
		sh.hostsDirty()
		return sh.toScreens(mustJSON(Msg{Type: TypeText, Text: m.Text})), nil
	}
	return 0, fmt.Errorf("message type %q cannot be applied", m.Type)
}

func (sh *show) online() int {
	n := 0
	for _, s := range sh.screens {
		if s.conn != nil {
			n++
		}
	}
	return n
}

func (sh *show) toScreens(b []byte) int {
	n := 0
	for _, s := range sh.screens {
		if s.conn != nil && s.conn.send(b) {
			n++
		}
	}
	return n
}

// shutdown closes every connection and stops grace timers.
func (sh *show) shutdown() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for h := range sh.hosts {
		h.close(errClosed)
	}
	for _, s := range sh.screens {
		if s.conn != nil {
			s.conn.close(errClosed)
		}
		if s.grace != nil {
			s.grace.Stop()
			s.grace = nil
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
