package transcode

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// OpusConfig configures an Opus to AAC transcoder: what RTMP readers (and
// HLS players) of a WebRTC-published stream need, made once per stream.
type OpusConfig struct {
	// Channels of the Opus input (1 or 2); the AAC output has as many.
	Channels int
	// OnFrame gets each AAC-LC access unit (48 kHz, 1024 samples) and its
	// timestamp in 48 kHz samples, in the input's timestamp space, from
	// the transcoder's reader goroutine; au is only valid during the call.
	OnFrame func(au []byte, ts uint32)
	// FFmpeg is the binary; "" looks up "ffmpeg" on PATH.
	FFmpeg string
	// Bitrate of the AAC output in bit/s; 0 means 128000.
	Bitrate int
	// Queue bounds the Opus packets waiting for the child; 0 means 64.
	Queue  int
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the restart delay; 0 means 250 ms
	// and 10 s.
	MinBackoff, MaxBackoff time.Duration
}

// OpusToAAC is one stream's Opus to AAC transcoder. Opus packets go in
// with Write, framed as Ogg pages on the child's stdin; ADTS comes out of
// its stdout.
type OpusToAAC struct {
	*child
	cfg OpusConfig

	mu      sync.Mutex // guards the Ogg writer's state (Write's callers)
	seq     uint32
	started bool
	first   uint32 // the first packet's timestamp: the output's origin
}

// maxOpusPacket bounds one Opus packet (RFC 6716 allows 1275 bytes per
// frame, at most 6 frames of 20 ms in a 120 ms packet).
const maxOpusPacket = 7650

const oggSerial = 0x50524c59 // "PRLY"

// StartOpusToAAC checks the configuration and starts the supervisor; it
// runs until ctx ends or Close. Without ffmpeg the status says so.
func StartOpusToAAC(ctx context.Context, cfg OpusConfig) (*OpusToAAC, error) {
	if cfg.Channels < 1 || cfg.Channels > 2 {
		return nil, fmt.Errorf("transcode: unsupported Opus channel count %d", cfg.Channels)
	}
	if cfg.OnFrame == nil {
		return nil, errors.New("transcode: OpusConfig.OnFrame is required")
	}
	cfg.Bitrate = positiveOr(cfg.Bitrate, 128000)
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error",
		"-probesize", "4096", "-analyzeduration", "0", "-fflags", "nobuffer",
		"-f", "ogg", "-i", "pipe:0",
		"-vn", "-c:a", "aac", "-aac_coder", "fast", "-b:a", strconv.Itoa(cfg.Bitrate), "-ar", "48000", "-ac", strconv.Itoa(cfg.Channels),
		"-f", "adts", "-flush_packets", "1", "pipe:1"}
	t := &OpusToAAC{cfg: cfg}
	var n uint32 // AAC frames given out, across restarts
	t.child = newChild("Opus to AAC", args, oggHeaders(cfg.Channels), func(r io.Reader) error { return t.readADTS(r, &n) },
		cfg.Queue, cfg.MinBackoff, cfg.MaxBackoff, cfg.Logger)
	t.start(ctx, cfg.FFmpeg)
	return t, nil
}

// Write queues one Opus packet with its 48 kHz timestamp; it never
// blocks, and drops the packet when the queue is full or it is malformed.
// Calls must not overlap.
func (t *OpusToAAC) Write(pkt []byte, ts uint32) {
	samples := OpusSamples(pkt)
	if samples == 0 || len(pkt) > maxOpusPacket {
		t.dropped.Add(1)
		return
	}
	f := t.take()
	if f == nil {
		return
	}
	t.mu.Lock()
	if !t.started {
		t.started, t.first = true, ts
	}
	t.seq++
	seq := t.seq + 1 // the two header pages are 0 and 1
	t.mu.Unlock()
	f.n = putOggPage(f.buf[:], 0, uint64(ts-t.first)+uint64(samples), seq, pkt)
	t.put(f)
}

// readADTS reads ADTS frames until EOF and gives out their access units.
func (t *OpusToAAC) readADTS(r io.Reader, n *uint32) error {
	br := bufio.NewReaderSize(r, 16<<10)
	var hdr [9]byte
	buf := make([]byte, 8192)
	for {
		if _, err := io.ReadFull(br, hdr[:7]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("ADTS header: %w", err)
		}
		if hdr[0] != 0xff || hdr[1]&0xf0 != 0xf0 {
			return errors.New("ADTS: lost sync")
		}
		hl := 7
		if hdr[1]&1 == 0 { // a CRC follows
			hl = 9
			if _, err := io.ReadFull(br, hdr[7:9]); err != nil {
				return fmt.Errorf("ADTS header: %w", err)
			}
		}
		l := int(hdr[3]&3)<<11 | int(hdr[4])<<3 | int(hdr[5])>>5
		if l < hl || l-hl > len(buf) {
			return fmt.Errorf("ADTS: frame of %d bytes", l)
		}
		au := buf[:l-hl]
		if _, err := io.ReadFull(br, au); err != nil {
			return fmt.Errorf("ADTS frame: %w", err)
		}
		t.mu.Lock()
		first := t.first
		t.mu.Unlock()
		t.packets.Add(1)
		t.cfg.OnFrame(au, first+*n*1024)
		*n++
	}
}

// oggHeaders are the Ogg Opus identification and comment pages (RFC 7845).
func oggHeaders(channels int) []byte {
	head := make([]byte, 19)
	copy(head, "OpusHead")
	head[8] = 1 // version
	head[9] = byte(channels)
	binary.LittleEndian.PutUint16(head[10:], 0)     // pre-skip: none, the input is already decoded elsewhere
	binary.LittleEndian.PutUint32(head[12:], 48000) // input rate
	tags := append([]byte("OpusTags"), 6, 0, 0, 0)
	tags = append(tags, "parley"...)
	tags = append(tags, 0, 0, 0, 0)
	out := make([]byte, 2*(27+1)+len(head)+len(tags))
	n := putOggPage(out, 0x02, 0, 0, head)
	n += putOggPage(out[n:], 0, 0, 1, tags)
	return out[:n]
}

// putOggPage writes one page holding one packet into b and returns its
// length; b must hold 27 + len(p)/255 + 1 + len(p) bytes.
func putOggPage(b []byte, flags byte, granule uint64, seq uint32, p []byte) int {
	nseg := len(p)/255 + 1
	copy(b, "OggS")
	b[4] = 0
	b[5] = flags
	binary.LittleEndian.PutUint64(b[6:], granule)
	binary.LittleEndian.PutUint32(b[14:], oggSerial)
	binary.LittleEndian.PutUint32(b[18:], seq)
	binary.LittleEndian.PutUint32(b[22:], 0)
	b[26] = byte(nseg)
	for i := range nseg - 1 {
		b[27+i] = 255
	}
	b[27+nseg-1] = byte(len(p) % 255)
	n := 27 + nseg + copy(b[27+nseg:], p)
	binary.LittleEndian.PutUint32(b[22:], oggCRC(b[:n]))
	return n
}

// oggCRC is Ogg's CRC-32 (polynomial 0x04c11db7, not reflected, no final
// xor), which hash/crc32 does not offer.
func oggCRC(b []byte) uint32 {
	var crc uint32
	for _, c := range b {
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^c]
	}
	return crc
}

var oggCRCTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return t
}()
