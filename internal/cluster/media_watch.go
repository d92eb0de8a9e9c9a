package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley/parley/internal/sfu"
)

// Following the streams bucket: which streams other nodes are the origin
// of, so that a node can say a stream is live before any of its viewers
// asked for it (Elsewhere, MediaOptions.OnStream), and so that viewers
// waiting here for a stream whose origin died continue when its
// publisher comes back on another node (originMoved).

// Elsewhere returns the node a stream is published on when that is
// another node, as the streams bucket last said.
func (m *Media) Elsewhere(stream string) (node string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	node, ok = m.remote[stream]
	return node, ok
}

// watchStreams follows the streams bucket until Close, watching it again
// after NATS comes back (a restarted server may have lost the bucket).
func (m *Media) watchStreams() {
	defer m.wg.Done()
	for m.ctx.Err() == nil {
		kv, err := m.streamsKV(m.ctx)
		if err == nil {
			err = m.follow(kv)
		}
		if err != nil && m.ctx.Err() == nil {
			m.log.Debug("following the streams bucket", "err", err)
			m.mu.Lock()
			m.kv = nil // open it again
			m.mu.Unlock()
		}
		retry := time.NewTimer(m.ttl / 3)
		select {
		case <-m.ctx.Done():
			retry.Stop()
			return
		case <-retry.C:
		}
	}
}

var errNewSession = errors.New("a new session with NATS")

// follow applies the bucket's entries as they change, until the watch
// ends or the node starts a new session with NATS (a restarted server
// may have lost the bucket, and a watch of the lost one can stay quiet).
// The watch starts with every current entry: the streams known before
// and missing now are gone.
func (m *Media) follow(kv jetstream.KeyValue) error {
	gen := m.c.sessions.Load()
	w, err := kv.WatchAll(m.ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	tick := time.NewTicker(m.ttl / 3)
	defer tick.Stop()
	initial := map[string]bool{} // until the watch's nil marks the current entries' end
	for {
		select {
		case <-m.ctx.Done():
			return nil
		case <-tick.C:
			if m.c.sessions.Load() != gen {
				return errNewSession
			}
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch ended")
			}
			if e == nil {
				if initial != nil {
					m.forgetExcept(initial)
					initial = nil
				}
				continue
			}
			stream, node := m.entryOrigin(e)
			if stream == "" {
				continue
			}
			if initial != nil {
				initial[stream] = true
			}
			m.setRemote(stream, node)
		}
	}
}

// entryOrigin reads an entry of the streams bucket: the stream and its
// origin node, "" for a deleted or expired entry or one naming this node.
// An entry that is no stream's gives no stream.
func (m *Media) entryOrigin(e jetstream.KeyValueEntry) (stream, node string) {
	name, err := base64.RawURLEncoding.DecodeString(e.Key())
	if err != nil || len(name) == 0 || len(name) > maxRelayID {
		m.stats.Rejected.Add(1)
		return "", ""
	}
	if e.Operation() != jetstream.KeyValuePut {
		return string(name), ""
	}
	var se streamEntry
	if err := json.Unmarshal(e.Value(), &se); err != nil || se.Stream != string(name) || !nodeIDRE.MatchString(se.Node) {
		m.stats.Rejected.Add(1)
		return "", ""
	}
	if se.Node == m.self {
		return se.Stream, ""
	}
	return se.Stream, se.Node
}

// setRemote records a stream's origin elsewhere ("" for none) and acts on
// a change.
func (m *Media) setRemote(stream, node string) {
	m.mu.Lock()
	prev := m.remote[stream]
	if node == "" {
		delete(m.remote, stream)
	} else {
		m.remote[stream] = node
	}
	m.mu.Unlock()
	if prev == node {
		return
	}
	if m.onStream != nil {
		m.onStream(stream)
	}
	if node != "" {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.originMoved(stream, node)
		}()
	}
}

// forgetExcept drops the streams known elsewhere that are not in keep
// (their entries went while the watch was down).
func (m *Media) forgetExcept(keep map[string]bool) {
	m.mu.Lock()
	var gone []string
	for s := range m.remote {
		if !keep[s] {
			gone = append(gone, s)
		}
	}
	m.mu.Unlock()
	for _, s := range gone {
		m.setRemote(s, "")
	}
}

// originMoved follows a stream to its (new) origin node for the viewers
// waiting for it here: a relay from another origin stops, and one from
// node starts. Without viewers here nothing starts (the next viewer's
// Demand does).
func (m *Media) originMoved(stream, node string) {
	sc := scope{sfu.Streams, stream}
	r, ok := m.sfu.LookupRoom(sc.ns, sc.name)
	if !ok || len(r.Participants()) == 0 {
		return
	}
	m.mu.Lock()
	var old []*edge
	for id, e := range m.edges {
		if id.scope == sc && id.origin != node {
			old = append(old, e)
		}
	}
	m.mu.Unlock()
	for _, e := range old {
		m.log.Info("the stream's origin moved; relaying from the new one", "stream", stream, "from", e.id.origin, "to", node)
		e.cancel()
		select {
		case <-e.done:
		case <-m.ctx.Done():
			return
		}
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.c.opTimeout())
	defer cancel()
	m.ensureEdge(ctx, edgeID{sc, node})
}
