package show

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxMessage bounds a control message (and a broadcast body) in bytes.
const MaxMessage = 8 << 10

// Limits on message fields.
const (
	maxLabel   = 40  // characters
	maxText    = 280 // characters
	maxIDLen   = 32
	minFlashMS = 20
	maxFlashMS = 10000
	defFlashMS = 300
	minGain    = 0.1
	maxGain    = 10
)

// Message types.
const (
	TypeHello   = "hello"
	TypeAssign  = "assign"
	TypeLayout  = "layout"
	TypeMode    = "mode"
	TypeFlash   = "flash"
	TypeText    = "text"
	TypeLevel   = "level"
	TypeScreens = "screens"
	TypeError   = "error"
	// TypeAir tells screens whether the show's audio is published:
	// {"type":"air","live":true|false}, sent when it changes (the hello
	// carries it as "audio_live"), so a waiting screen asks for the audio
	// once it is there instead of retrying.
	TypeAir = "air"
)

// Palettes a screen can paint with.
var palettes = map[string]bool{
	"redblue": true, // the seed's rgb(255-level, 0, level)
	"hue":     true, // hue wheel: level turns the hue, brightness follows level
	"beat":    true, // black, white flash on beats (level jumps)
	"mono":    true, // one colour (Mode.Color), brightness follows level
}

// PaletteNames lists the palettes in a stable order.
func PaletteNames() []string { return []string{"redblue", "hue", "beat", "mono"} }

// Error codes of {"type":"error"} messages and HTTP error bodies.
const (
	CodeBadMessage  = "bad-message"
	CodeBadBody     = "bad-body"
	CodeForbidden   = "forbidden"
	CodeRateLimited = "rate-limited"
	CodeTooLarge    = "too-large"
	CodeUnknown     = "unknown-screen"
)

// Role is what a control connection is.
type Role string

// Roles of control connections; RoleControl is the HTTP broadcast caller.
const (
	RoleHost    Role = "host"
	RoleScreen  Role = "screen"
	RoleControl Role = "control"
)

// Msg is one control message in either direction. Fields are used by
// the types named in their comments.
type Msg struct {
	Type string `json:"type"`
	// assign (host→server): the screen's id; assign (server→screen) and
	// screens carry Band/Index/Label.
	Screen string   `json:"screen,omitempty"`
	Band   *Band    `json:"band,omitempty"`
	Label  *string  `json:"label,omitempty"`
	Index  *int     `json:"index,omitempty"`
	Count  int      `json:"count,omitempty"`
	Order  []string `json:"order,omitempty"` // layout
	Auto   bool     `json:"auto,omitempty"`  // layout: back to join order and automatic bands
	// mode
	Palette string  `json:"palette,omitempty"`
	Color   string  `json:"color,omitempty"` // mode (mono) and flash
	Gain    float64 `json:"gain,omitempty"`
	MS      int     `json:"ms,omitempty"`   // flash duration
	Text    *string `json:"text,omitempty"` // text ("" clears)
	Value   *int    `json:"value,omitempty"`
}

// ErrBadMessage wraps every validation failure.
var ErrBadMessage = errors.New("bad message")

func badf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadMessage, fmt.Sprintf(format, a...))
}

// allowed lists the message types each role may send.
var allowed = map[Role]map[string]bool{
	RoleScreen: {TypeLevel: true},
	RoleHost:   {TypeAssign: true, TypeLayout: true, TypeMode: true, TypeFlash: true, TypeText: true},
}

// Decode parses and validates a control message sent by role. The
// returned Msg is normalised (defaults filled in).
func Decode(data []byte, role Role) (Msg, error) {
	var m Msg
	if len(data) > MaxMessage {
		return m, badf("message is %d bytes, the limit is %d", len(data), MaxMessage)
	}
	if err := strictUnmarshal(data, &m); err != nil {
		return m, err
	}
	if m.Type == "" {
		return m, badf(`missing "type"`)
	}
	if !allowed[role][m.Type] {
		return m, badf("a %s may not send %q messages", role, m.Type)
	}
	if err := m.validate(); err != nil {
		return m, err
	}
	return m, nil
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badf("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badf("trailing data after the JSON object")
	}
	return nil
}

// validate checks the fields of an incoming message and fills defaults.
func (m *Msg) validate() error {
	switch m.Type {
	case TypeLevel:
		if m.Value == nil || *m.Value < 0 || *m.Value > 255 {
			return badf(`level needs "value" 0..255`)
		}
	case TypeAssign:
		if !validID(m.Screen) {
			return badf(`assign needs "screen": a screen id`)
		}
		if m.Band == nil && m.Label == nil {
			return badf(`assign needs "band" [lo, hi] in Hz and/or "label"`)
		}
		if m.Band != nil && !m.Band.valid() {
			return badf("band must be [lo, hi] with %v <= lo < hi <= %v Hz", minBandFreq, maxBandFreq)
		}
		if m.Label != nil {
			if err := checkLabel(*m.Label); err != nil {
				return err
			}
		}
	case TypeLayout:
		if m.Auto == (m.Order != nil) {
			return badf(`layout needs either "order" (screen ids) or "auto": true`)
		}
		seen := map[string]bool{}
		for _, id := range m.Order {
			if !validID(id) || seen[id] {
				return badf("order must list distinct screen ids")
			}
			seen[id] = true
		}
	case TypeMode:
		if m.Palette == "" && m.Color == "" && m.Gain == 0 {
			return badf(`mode needs "palette" (%s), "color" or "gain"`, strings.Join(PaletteNames(), ", "))
		}
		if m.Palette != "" && !palettes[m.Palette] {
			return badf("unknown palette %q; use one of %s", m.Palette, strings.Join(PaletteNames(), ", "))
		}
		if m.Color != "" && !validColor(m.Color) {
			return badf(`color must be "#rgb" or "#rrggbb"`)
		}
		if m.Gain != 0 && (math.IsNaN(m.Gain) || m.Gain < minGain || m.Gain > maxGain) {
			return badf("gain must be %v..%v", minGain, maxGain)
		}
	case TypeFlash:
		if m.Color == "" {
			m.Color = "#ffffff"
		}
		if !validColor(m.Color) {
			return badf(`color must be "#rgb" or "#rrggbb"`)
		}
		if m.MS == 0 {
			m.MS = defFlashMS
		}
		if m.MS < minFlashMS || m.MS > maxFlashMS {
			return badf("ms must be %d..%d", minFlashMS, maxFlashMS)
		}
	case TypeText:
		if m.Text == nil {
			return badf(`text needs "text" ("" clears it)`)
		}
		if err := checkText(*m.Text, maxText); err != nil {
			return err
		}
	default:
		return badf("unknown type %q", m.Type)
	}
	return nil
}

var (
	idRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	colorRE = regexp.MustCompile(`^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,59}$`)
)

func validID(s string) bool    { return idRE.MatchString(s) }
func validColor(s string) bool { return colorRE.MatchString(s) }

// ValidName reports whether s is a show name: 1-59 of A-Z a-z 0-9 _ . -
// (59 so that the audio stream name "show-<name>" fits WHIP's 64).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// StreamName is the WHIP/WHEP stream that carries a show's audio.
func StreamName(show string) string { return "show-" + show }

// ShowOfStream is the show whose audio stream is stream, if it is one.
func ShowOfStream(stream string) (string, bool) { return strings.CutPrefix(stream, "show-") }

func checkLabel(s string) error {
	if strings.TrimSpace(s) == "" {
		return badf("label must not be empty")
	}
	return checkText(s, maxLabel)
}

// checkText allows printable text (and spaces) up to max characters.
func checkText(s string, max int) error {
	if !utf8.ValidString(s) {
		return badf("text must be UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > max {
		return badf("text is %d characters, the limit is %d", n, max)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return badf("text must not contain control characters")
		}
	}
	return nil
}

// Broadcast is the body of POST /api/shows/{name}/broadcast. Every field
// is optional but at least one must be set; each becomes one message.
type Broadcast struct {
	Mode  string  `json:"mode,omitempty"`  // palette
	Color string  `json:"color,omitempty"` // for mode "mono"
	Gain  float64 `json:"gain,omitempty"`
	Flash string  `json:"flash,omitempty"` // colour to flash
	MS    int     `json:"ms,omitempty"`    // flash duration
	Text  *string `json:"text,omitempty"`  // "" clears
}

// DecodeBroadcast parses and validates a broadcast body into messages.
func DecodeBroadcast(data []byte) ([]Msg, error) {
	if len(data) > MaxMessage {
		return nil, badf("body is %d bytes, the limit is %d", len(data), MaxMessage)
	}
	var b Broadcast
	if err := strictUnmarshal(data, &b); err != nil {
		return nil, err
	}
	var out []Msg
	if b.Mode != "" || b.Color != "" || b.Gain != 0 {
		out = append(out, Msg{Type: TypeMode, Palette: b.Mode, Color: b.Color, Gain: b.Gain})
	}
	if b.Flash != "" {
		out = append(out, Msg{Type: TypeFlash, Color: b.Flash, MS: b.MS})
	} else if b.MS != 0 {
		return nil, badf(`"ms" goes with "flash"`)
	}
	if b.Text != nil {
		out = append(out, Msg{Type: TypeText, Text: b.Text})
	}
	if len(out) == 0 {
		return nil, badf(`the body needs at least one of "mode", "color", "gain", "flash", "text"`)
	}
	for i := range out {
		if err := out[i].validate(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
