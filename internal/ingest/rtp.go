package ingest

import (
	"encoding/binary"
	"time"
)

// maxRTPPayload keeps packets under a 1200-byte MTU.
const maxRTPPayload = 1200 - rtpHeaderLen

const rtpHeaderLen = 12

// rtpWriter builds RTP packets for one track in a reused buffer; it is
// owned by the goroutine that feeds the track.
type rtpWriter struct {
	pt    uint8
	ssrc  uint32
	seq   uint16
	buf   [rtpHeaderLen + maxRTPPayload]byte
	write func(pkt []byte) error
}

// header fills the fixed header; the payload goes at buf[rtpHeaderLen:].
func (w *rtpWriter) send(marker bool, ts uint32, n int) error {
	b := w.buf[:rtpHeaderLen]
	b[0] = 0x80
	b[1] = w.pt & 0x7f
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], w.seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], w.ssrc)
	w.seq++
	return w.write(w.buf[:rtpHeaderLen+n])
}

// payload sends one packet with this payload (at most maxRTPPayload).
func (w *rtpWriter) payload(marker bool, ts uint32, p []byte) error {
	return w.send(marker, ts, copy(w.buf[rtpHeaderLen:], p))
}

// ticks is an RTP timestamp: pts at this clock rate, modulo 2^32 (pts ×
// clock would overflow after 28 hours at 90 kHz).
func ticks(pts time.Duration, clock int64) uint32 {
	return uint32(int64(pts/time.Second)*clock + int64(pts%time.Second)*clock/int64(time.Second))
}

// H.264 NAL unit types this packetizer looks at (RFC 6184).
const (
	naluIDR  = 5
	naluSPS  = 7
	naluPPS  = 8
	naluAUD  = 9
	naluFUA  = 28
	maxNALUs = 64
)

// h264 packetizes access units with packetization-mode=1: single NAL
// unit packets, FU-A for larger units, the marker on an access unit's
// last packet. SPS and PPS go before every IDR that lacks them, so a
// viewer starting on any keyframe can decode.
type h264 struct {
	rtpWriter
	sps, pps []byte
	nalus    [maxNALUs + 2][]byte
}

// setParams keeps the latest SPS and PPS (copied).
func (h *h264) setParams(sps, pps []byte) {
	if len(sps) > 0 {
		h.sps = append(h.sps[:0], sps...)
	}
	if len(pps) > 0 {
		h.pps = append(h.pps[:0], pps...)
	}
}

// writeAU sends one access unit with its presentation time.
func (h *h264) writeAU(au [][]byte, pts time.Duration) error {
	ts := ticks(pts, 90000)
	list := h.nalus[:0]
	idr, params := false, false
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch n[0] & 0x1f {
		case naluAUD:
			continue
		case naluIDR:
			idr = true
		case naluSPS, naluPPS:
			params = true
		}
		if len(list) < maxNALUs {
			list = append(list, n)
		}
	}
	if len(list) == 0 {
		return nil
	}
	if idr && !params && len(h.sps) > 0 && len(h.pps) > 0 {
		list = append(list, nil, nil)
		copy(list[2:], list[:len(list)-2])
		list[0], list[1] = h.sps, h.pps
	}
	for i, n := range list {
		last := i == len(list)-1
		if len(n) <= maxRTPPayload {
			if err := h.payload(last, ts, n); err != nil {
				return err
			}
			continue
		}
		// FU-A: indicator (F, NRI, type 28), header (S, E, type), fragment.
		ind, typ := n[0]&0xe0|naluFUA, n[0]&0x1f
		for rest, start := n[1:], true; len(rest) > 0; start = false {
			k := min(len(rest), maxRTPPayload-2)
			end := k == len(rest)
			hdr := typ
			if start {
				hdr |= 0x80
			}
			if end {
				hdr |= 0x40
			}
			h.buf[rtpHeaderLen], h.buf[rtpHeaderLen+1] = ind, hdr
			copy(h.buf[rtpHeaderLen+2:], rest[:k])
			if err := h.send(last && end, ts, 2+k); err != nil {
				return err
			}
			rest = rest[k:]
		}
	}
	return nil
}

// H.265 NAL unit types this packetizer looks at (RFC 7798).
const (
	h265VPS = 32
	h265SPS = 33
	h265PPS = 34
	h265AUD = 35
	h265FU  = 49
)

// h265 packetizes H.265 access units (RFC 7798, no DONL): single NAL unit
// packets, fragmentation units for larger units, the marker on an access
// unit's last packet; VPS, SPS and PPS go before every IRAP picture that
// lacks them.
type h265 struct {
	rtpWriter
	vps, sps, pps []byte
	nalus         [maxNALUs + 3][]byte
}

func (h *h265) setParams(vps, sps, pps []byte) {
	if len(vps) > 0 {
		h.vps = append(h.vps[:0], vps...)
	}
	if len(sps) > 0 {
		h.sps = append(h.sps[:0], sps...)
	}
	if len(pps) > 0 {
		h.pps = append(h.pps[:0], pps...)
	}
}

func (h *h265) writeAU(au [][]byte, pts time.Duration) error {
	ts := ticks(pts, 90000)
	list := h.nalus[:0]
	irap, params := false, false
	for _, n := range au {
		if len(n) < 2 {
			continue
		}
		switch t := n[0] >> 1 & 0x3f; {
		case t == h265AUD:
			continue
		case t >= 16 && t <= 21:
			irap = true
		case t == h265VPS || t == h265SPS || t == h265PPS:
			params = true
		}
		if len(list) < maxNALUs {
			list = append(list, n)
		}
	}
	if len(list) == 0 {
		return nil
	}
	if irap && !params && len(h.vps) > 0 && len(h.sps) > 0 && len(h.pps) > 0 {
		list = append(list, nil, nil, nil)
		copy(list[3:], list[:len(list)-3])
		list[0], list[1], list[2] = h.vps, h.sps, h.pps
	}
	for i, n := range list {
		last := i == len(list)-1
		if len(n) <= maxRTPPayload {
			if err := h.payload(last, ts, n); err != nil {
				return err
			}
			continue
		}
		// FU: payload header (type 49, the unit's layer and TID), FU
		// header (S, E, type), fragment.
		typ := n[0] >> 1 & 0x3f
		h0, h1 := n[0]&0x81|h265FU<<1, n[1]
		for rest, start := n[2:], true; len(rest) > 0; start = false {
			k := min(len(rest), maxRTPPayload-3)
			end := k == len(rest)
			fu := typ
			if start {
				fu |= 0x80
			}
			if end {
				fu |= 0x40
			}
			h.buf[rtpHeaderLen], h.buf[rtpHeaderLen+1], h.buf[rtpHeaderLen+2] = h0, h1, fu
			copy(h.buf[rtpHeaderLen+3:], rest[:k])
			if err := h.send(last && end, ts, 3+k); err != nil {
				return err
			}
			rest = rest[k:]
		}
	}
	return nil
}
