package ingest

import (
	"sync"
	"time"
)

// SourceInfo is what a stream's status says of its live non-WebRTC source.
type SourceInfo struct {
	Proto  string    `json:"proto"`
	Since  time.Time `json:"since"`
	Tracks []string  `json:"tracks"`
	// Notes are problems viewers should be told about, in words: video
	// that no browser decodes, B-frames, no sound.
	Notes      []string `json:"notes,omitempty"`
	AudioError string   `json:"audio_error,omitempty"`
}

// Registry lists the live publishers by stream. A nil Registry lists
// nothing.
type Registry struct {
	mu   sync.Mutex
	live map[string]*Publisher
}

// NewRegistry makes an empty registry.
func NewRegistry() *Registry { return &Registry{live: map[string]*Publisher{}} }

func (r *Registry) add(p *Publisher) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.live[p.cfg.Stream] = p
	r.mu.Unlock()
}

func (r *Registry) remove(p *Publisher) {
	if r == nil {
		return
	}
	r.mu.Lock()
	if r.live[p.cfg.Stream] == p {
		delete(r.live, p.cfg.Stream)
	}
	r.mu.Unlock()
}

// Source describes the stream's live publisher, if it is one of ours.
func (r *Registry) Source(stream string) (SourceInfo, bool) {
	if r == nil {
		return SourceInfo{}, false
	}
	r.mu.Lock()
	p := r.live[stream]
	r.mu.Unlock()
	if p == nil {
		return SourceInfo{}, false
	}
	return p.Info(), true
}
