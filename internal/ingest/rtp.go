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
		list = prepend(list, h.sps, h.pps)
	}
	return h.sendNALUs(list, ticks(pts, 90000), 1, fuA)
}

// fuA is the FU-A header for a fragment of an H.264 unit whose NAL header
// is hdr (RFC 6184): indicator (F, NRI, type 28), then S, E and the type.
func fuA(dst, hdr []byte, start, end bool) int {
	dst[0], dst[1] = hdr[0]&0xe0|naluFUA, hdr[0]&0x1f|fuFlags(start, end)
	return 2
}

func fuFlags(start, end bool) byte {
	var f byte
	if start {
		f |= 0x80
	}
	if end {
		f |= 0x40
	}
	return f
}

// prepend puts units before the list (whose array has room for them).
func prepend(list [][]byte, units ...[]byte) [][]byte {
	n := len(units)
	list = list[:len(list)+n]
	copy(list[n:], list[:len(list)-n])
	copy(list, units)
	return list
}

// sendNALUs sends an access unit's NAL units with one timestamp: each
// that fits as a single-NAL-unit packet, larger ones as fragments after a
// header that frag writes from the unit's hdrLen-byte NAL header (and
// whose length it returns); the marker on the last packet.
func (w *rtpWriter) sendNALUs(list [][]byte, ts uint32, hdrLen int, frag func(dst, hdr []byte, start, end bool) int) error {
	for i, n := range list {
		last := i == len(list)-1
		if len(n) <= maxRTPPayload {
			if err := w.payload(last, ts, n); err != nil {
				return err
			}
			continue
		}
		for rest, start := n[hdrLen:], true; len(rest) > 0; start = false {
			k := min(len(rest), maxRTPPayload-hdrLen-1) // a fragment header is the NAL header and one byte
			end := k == len(rest)
			fh := frag(w.buf[rtpHeaderLen:], n[:hdrLen], start, end)
			copy(w.buf[rtpHeaderLen+fh:], rest[:k])
			if err := w.send(last && end, ts, fh+k); err != nil {
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
		list = prepend(list, h.vps, h.sps, h.pps)
	}
	return h.sendNALUs(list, ticks(pts, 90000), 2, fu265)
}

// fu265 is the header for a fragment of an H.265 unit whose NAL header is
// hdr (RFC 7798): payload header (type 49, the unit's layer and TID),
// then the FU header (S, E, type).
func fu265(dst, hdr []byte, start, end bool) int {
	dst[0], dst[1], dst[2] = hdr[0]&0x81|h265FU<<1, hdr[1], hdr[0]>>1&0x3f|fuFlags(start, end)
	return 3
}
