package transcode

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// opusPackets makes seconds of a 440 Hz tone as 20 ms Opus packets.
func opusPackets(t testing.TB, seconds int) [][]byte {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "sine=f=440:sample_rate=48000:duration="+strconv.Itoa(seconds), "-ac", "2",
		"-c:a", "libopus", "-frame_duration", "20", "-f", "ogg", "pipe:1").Output()
	if err != nil {
		t.Fatalf("making Opus: %v", err)
	}
	r := NewOggReader(bytes.NewReader(out))
	var pkts [][]byte
	for {
		p, err := r.Next()
		if err != nil {
			break
		}
		if !isOpusHeader(p) {
			pkts = append(pkts, bytes.Clone(p))
		}
	}
	return pkts
}

type aacFrame struct {
	au []byte
	ts uint32
}

// TestOpusToAAC: a 440 Hz tone in Opus comes out as AAC frames, 1024
// samples apart, that decode back to the tone.
func TestOpusToAAC(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	pkts := opusPackets(t, 10)
	frames := make(chan aacFrame, 1024)
	tr, err := StartOpusToAAC(context.Background(), OpusConfig{Channels: 2, OnFrame: func(au []byte, ts uint32) {
		frames <- aacFrame{bytes.Clone(au), ts}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const start = 123456 // an arbitrary RTP timestamp origin
	var got []aacFrame
	want := len(pkts)*960/1024 - 4 // the encoder holds a few frames back
	deadline := time.After(60 * time.Second)
	for i := 0; len(got) < want; {
		// Stay at most 20 packets (400 ms) ahead of what came out.
		if i < len(pkts) && i*960-len(got)*1024 < 20*960 {
			tr.Write(pkts[i], uint32(start+i*960))
			i++
			continue
		}
		select {
		case f := <-frames:
			got = append(got, f)
		case <-deadline:
			t.Fatalf("after %d packets in, %d AAC frames out; status %+v", i, len(got), tr.Status())
		}
	}
	cpu := childCPU(t, tr.Status().PID)
	for i, f := range got {
		if f.ts != uint32(start+i*1024) {
			t.Fatalf("frame %d: timestamp %d, want %d", i, f.ts, start+i*1024)
		}
	}
	// Decode the AAC again and find the tone.
	var adts []byte
	for _, f := range got {
		h := make([]byte, adtsHeaderLen)
		putADTSHeader(h, 3, 2, len(f.au)) // 48 kHz stereo
		adts = append(append(adts, h...), f.au...)
	}
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "aac", "-i", "pipe:0",
		"-ac", "1", "-f", "s16le", "pipe:1")
	cmd.Stdin = bytes.NewReader(adts)
	pcm, err := cmd.Output()
	if err != nil {
		t.Fatalf("decoding the AAC: %v", err)
	}
	if hz := toneHz(pcm[len(pcm)/4:], 48000); math.Abs(hz-440) > 5 {
		t.Fatalf("the decoded AAC's tone is %.1f Hz, want 440", hz)
	}
	audio := time.Duration(len(got)) * 1024 * time.Second / 48000
	t.Logf("Opus->AAC: %d frames (%s of audio) for %s of ffmpeg CPU: %.4f core per stream", len(got), audio, cpu, cpu.Seconds()/audio.Seconds())
	if st := tr.Status(); st.Dropped != 0 || st.Err != "" {
		t.Fatalf("status %+v", st)
	}
}

// toneHz estimates a pure tone's frequency from s16le mono samples by
// counting rising zero crossings.
func toneHz(pcm []byte, rate int) float64 {
	n := len(pcm) / 2
	crossings, prev := 0, int16(0)
	for i := range n {
		v := int16(binary.LittleEndian.Uint16(pcm[2*i:]))
		if prev < 0 && v >= 0 {
			crossings++
		}
		prev = v
	}
	return float64(crossings) * float64(rate) / float64(n)
}

func TestOggPagesRoundTrip(t *testing.T) {
	b := oggHeaders(2)
	pkt := bytes.Repeat([]byte{0xfc, 7}, 400) // 800 bytes: four segments
	page := make([]byte, 27+8+len(pkt))
	n := putOggPage(page, 0, 960, 2, pkt)
	b = append(b, page[:n]...)
	r := NewOggReader(bytes.NewReader(b))
	var got [][]byte
	for {
		p, err := r.Next()
		if err != nil {
			break
		}
		got = append(got, bytes.Clone(p))
	}
	if len(got) != 3 || string(got[0][:8]) != "OpusHead" || string(got[1][:8]) != "OpusTags" || !bytes.Equal(got[2], pkt) {
		t.Fatalf("read back %d packets", len(got))
	}
	// The CRC of a page with its CRC field in place checks to the known
	// residue of this CRC (0 for Ogg's: no final xor, no reflection).
	page[22], page[23], page[24], page[25] = 0, 0, 0, 0
	if crc := oggCRC(page[:n]); crc != binary.LittleEndian.Uint32(b[len(b)-n+22:]) {
		t.Fatalf("CRC %08x", crc)
	}
}

func TestOpusToAACMissingFFmpeg(t *testing.T) {
	tr, err := StartOpusToAAC(context.Background(), OpusConfig{Channels: 2, FFmpeg: "/nonexistent/ffmpeg", OnFrame: func([]byte, uint32) {}})
	if err != nil {
		t.Fatal(err)
	}
	tr.Write([]byte{0xfc, 1, 2}, 0)
	tr.Close()
	if st := tr.Status(); st.Err != ErrNoFFmpeg.Error() || st.Packets != 0 {
		t.Fatalf("status %+v", st)
	}
}

// FuzzReadADTS: whatever the child writes, the ADTS reader hands out
// bounded access units or stops with an error, without panicking.
func FuzzReadADTS(f *testing.F) {
	h := make([]byte, adtsHeaderLen+3)
	putADTSHeader(h, 3, 2, 3)
	f.Add(append(h, h...))
	f.Add([]byte{0xff, 0xf0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		tr := &OpusToAAC{child: &child{}, cfg: OpusConfig{OnFrame: func(au []byte, _ uint32) {
			if len(au) > 8192 {
				t.Fatalf("access unit of %d bytes", len(au))
			}
		}}}
		var n uint32
		_ = tr.readADTS(bytes.NewReader(b), &n)
	})
}
