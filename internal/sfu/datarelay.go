package sfu

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
)

// Data relay: in a server-routed room, chat, file and control messages
// travel on one data channel between each participant and the server
// (label "parley", negotiated, id 0), and the server relays them, so they
// reach everyone without a mesh.
//
// Text messages are JSON objects. An optional "to" names one participant;
// without it the message goes to everyone else. The server sets "from" to
// the sender's ID before relaying (a client cannot forge it).
//
// Binary messages (file chunks) start with a 16-byte ASCII header: the
// recipient's ID, or 16 '*' for everyone. The server replaces the header
// with the sender's ID and relays the rest untouched.
const (
	DataLabel         = "parley"
	DataChannelID     = 0
	dataHeaderLen     = 16
	maxRelayedMessage = 256 << 10
	// maxRelayBuffered bounds what the server queues for one receiver; past
	// it the receiver's copy is dropped and the sender is told.
	maxRelayBuffered = 8 << 20
)

var errBadDataMessage = errors.New("bad data message")

type dataRelay struct {
	dc      *webrtc.DataChannel
	open    atomic.Bool
	dropped atomic.Uint64
}

// enableDataRelay creates the participant's negotiated relay channel.
func (p *Participant) enableDataRelay() error {
	negotiated, id := true, uint16(DataChannelID)
	dc, err := p.pc.CreateDataChannel(DataLabel, &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id})
	if err != nil {
		return fmt.Errorf("sfu: data channel: %w", err)
	}
	rel := &dataRelay{dc: dc}
	dc.OnOpen(func() { rel.open.Store(true) })
	dc.OnClose(func() { rel.open.Store(false) })
	dc.OnMessage(func(m webrtc.DataChannelMessage) { p.relayData(m) })
	p.data.Store(rel)
	return nil
}

// relayData forwards one message from p to its addressees.
func (p *Participant) relayData(m webrtc.DataChannelMessage) {
	if p.noPublish {
		p.sendDataError("", "forbidden", "sending data needs the publish grant")
		return
	}
	to, out, err := rewriteData(p.id, m.Data, m.IsString)
	if err != nil {
		p.sendDataError("", "bad-message", err.Error())
		return
	}
	for _, q := range p.room.Participants() {
		if q == p || (to != "" && q.id != to) || q.noSubscribe {
			continue // a member without the subscribe grant receives no data
		}
		if !q.sendData(out, m.IsString) {
			p.sendDataError(q.id, "slow-receiver", "the receiver is not keeping up; message dropped")
		}
	}
}

// rewriteData validates a relayed message and stamps the sender on it. It
// returns the addressee ("" for everyone) and the bytes to forward.
func rewriteData(from string, b []byte, isText bool) (to string, out []byte, err error) {
	if len(b) > maxRelayedMessage {
		return "", nil, fmt.Errorf("%w: %d bytes is over %d", errBadDataMessage, len(b), maxRelayedMessage)
	}
	if !isText {
		if len(b) < dataHeaderLen {
			return "", nil, fmt.Errorf("%w: binary messages start with a %d-byte recipient", errBadDataMessage, dataHeaderLen)
		}
		if hdr := string(b[:dataHeaderLen]); hdr != "****************" {
			to = hdr
		}
		out = make([]byte, 0, len(b))
		out = append(out, padID(from)...)
		return to, append(out, b[dataHeaderLen:]...), nil
	}
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(b, &msg); err != nil {
		return "", nil, fmt.Errorf("%w: text messages are JSON objects", errBadDataMessage)
	}
	if raw, ok := msg["to"]; ok {
		if json.Unmarshal(raw, &to) != nil {
			return "", nil, fmt.Errorf("%w: \"to\" is a participant ID", errBadDataMessage)
		}
		delete(msg, "to")
	}
	fromJSON, _ := json.Marshal(from)
	msg["from"] = fromJSON
	out, err = json.Marshal(msg)
	return to, out, err
}

// padID makes an ID exactly dataHeaderLen bytes (IDs are 16 hex characters).
func padID(id string) string {
	if len(id) >= dataHeaderLen {
		return id[:dataHeaderLen]
	}
	return id + "________________"[:dataHeaderLen-len(id)]
}

// sendData queues b on p's relay channel; false when p is too far behind.
func (p *Participant) sendData(b []byte, isText bool) bool {
	rel := p.data.Load()
	if rel == nil || !rel.open.Load() {
		return true // not connected yet or no relay: nothing to deliver to
	}
	if rel.dc.BufferedAmount() > maxRelayBuffered {
		rel.dropped.Add(1)
		return false
	}
	var err error
	if isText {
		err = rel.dc.SendText(string(b))
	} else {
		err = rel.dc.Send(b)
	}
	return err == nil
}

func (p *Participant) sendDataError(to, code, msg string) {
	b, _ := json.Marshal(map[string]string{"type": "relay-error", "to": to, "code": code, "message": msg})
	p.sendData(b, true)
}
