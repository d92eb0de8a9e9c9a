package transcode

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// OggReader reads the packets of one logical Ogg stream (RFC 3533) from
// ffmpeg's output. It reuses its buffers: a packet is only valid until
// the next call to Next.
type OggReader struct {
	r    *bufio.Reader
	hdr  [27]byte
	segs [255]byte
	page []byte // the current page's body
	seg  int    // next segment of the page
	pos  int    // where that segment starts in page
	nseg int
	pkt  []byte // a packet being assembled across pages
}

// maxOggPacket bounds a packet assembled across pages.
const maxOggPacket = 64 << 10

// ErrOgg reports a malformed Ogg stream.
var ErrOgg = errors.New("transcode: malformed Ogg stream")

// NewOggReader reads Ogg pages from r.
func NewOggReader(r io.Reader) *OggReader {
	return &OggReader{r: bufio.NewReaderSize(r, 16<<10), page: make([]byte, 0, 255*255), pkt: make([]byte, 0, 4096)}
}

// Next returns the next complete packet, or io.EOF at the end.
func (o *OggReader) Next() ([]byte, error) {
	o.pkt = o.pkt[:0]
	for {
		for o.seg < o.nseg {
			l := int(o.segs[o.seg])
			if len(o.pkt)+l > maxOggPacket {
				return nil, fmt.Errorf("%w: packet over %d bytes", ErrOgg, maxOggPacket)
			}
			o.pkt = append(o.pkt, o.page[o.pos:o.pos+l]...)
			o.pos += l
			o.seg++
			if l < 255 {
				return o.pkt, nil
			}
		}
		if err := o.readPage(); err != nil {
			return nil, err
		}
	}
}

func (o *OggReader) readPage() error {
	if _, err := io.ReadFull(o.r, o.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: truncated page header", ErrOgg)
		}
		return err
	}
	if string(o.hdr[:4]) != "OggS" || o.hdr[4] != 0 {
		return fmt.Errorf("%w: bad capture pattern or version", ErrOgg)
	}
	o.nseg = int(o.hdr[26])
	if _, err := io.ReadFull(o.r, o.segs[:o.nseg]); err != nil {
		return fmt.Errorf("%w: truncated segment table: %w", ErrOgg, err)
	}
	size := 0
	for _, l := range o.segs[:o.nseg] {
		size += int(l)
	}
	o.page = o.page[:size]
	if _, err := io.ReadFull(o.r, o.page); err != nil {
		return fmt.Errorf("%w: truncated page: %w", ErrOgg, err)
	}
	if o.hdr[5]&0x01 == 0 { // not a continuation: a packet left open is lost
		o.pkt = o.pkt[:0]
	}
	o.seg, o.pos = 0, 0
	return nil
}

// OpusSamples is the duration of an Opus packet in 48 kHz samples, from
// its TOC byte and frame count (RFC 6716 section 3.1); 0 for a malformed
// packet.
func OpusSamples(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	config := toc >> 3
	var frame int // samples per frame at 48 kHz
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]int{480, 960, 1920, 2880}[config&3]
	case config < 16: // hybrid: 10, 20 ms
		frame = [2]int{480, 960}[config&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]int{120, 240, 480, 960}[config&3]
	}
	var frames int
	switch toc & 3 {
	case 0:
		frames = 1
	case 1, 2:
		frames = 2
	default:
		if len(p) < 2 {
			return 0
		}
		frames = int(p[1] & 0x3f)
	}
	if n := frames * frame; n > 0 && n <= 5760 { // at most 120 ms
		return n
	}
	return 0
}

const adtsHeaderLen = 7

var adtsRates = [...]int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

func sampleRateIndex(rate int) (int, bool) {
	for i, r := range adtsRates {
		if r == rate {
			return i, true
		}
	}
	return 0, false
}

// putADTSHeader writes a 7-byte ADTS header (MPEG-4, AAC-LC, no CRC) for
// an access unit of n bytes.
func putADTSHeader(b []byte, srIdx, channels, n int) {
	l := n + adtsHeaderLen
	b[0] = 0xff
	b[1] = 0xf1                                    // MPEG-4, layer 0, no CRC
	b[2] = byte(1<<6 | srIdx<<2 | (channels>>2)&1) // profile AAC-LC (object type 2 - 1)
	b[3] = byte((channels&3)<<6 | (l>>11)&3)
	b[4] = byte(l >> 3)
	b[5] = byte((l&7)<<5 | 0x1f)
	b[6] = 0xfc
}
