package transcode

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/parley/parley/internal/rtmp/rtmptest"
)

// aacFrames makes seconds of a 440 Hz tone as AAC access units (44.1 kHz stereo).
func aacFrames(t testing.TB, seconds int) [][]byte {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "sine=f=440:sample_rate=44100:duration="+strconv.Itoa(seconds), "-ac", "2",
		"-c:a", "aac", "-f", "adts", "pipe:1").Output()
	if err != nil {
		t.Fatalf("making AAC: %v", err)
	}
	var ps mpeg4audio.ADTSPackets
	var aus [][]byte
	for len(out) > 0 {
		l := int(out[3]&3)<<11 | int(out[4])<<3 | int(out[5])>>5
		if err := ps.Unmarshal(out[:l]); err != nil {
			t.Fatalf("ADTS: %v", err)
		}
		aus = append(aus, ps[0].AU)
		out = out[l:]
	}
	return aus
}

type opusPkt struct {
	pkt []byte
	ts  uint32
}

// feed writes AUs at most 20 frames ahead of the Opus coming out.
func feed(t *testing.T, tr *AACToOpus, aus [][]byte, pkts <-chan opusPkt) []opusPkt {
	t.Helper()
	var got []opusPkt
	timeout := time.After(60 * time.Second)
	for i := 0; i < len(aus) || time.Duration(len(got))*20*time.Millisecond < time.Duration(len(aus)-8)*1024*time.Second/44100; {
		fedMs := i * 1024 * 1000 / 44100
		if i < len(aus) && fedMs-len(got)*20 < 400 {
			tr.Write(aus[i])
			i++
			continue
		}
		select {
		case p := <-pkts:
			got = append(got, p)
		case <-timeout:
			t.Fatalf("after %d frames in, only %d Opus packets out; status %+v", i, len(got), tr.Status())
		}
	}
	return got
}

func TestAACToOpus(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	aus := aacFrames(t, 20)
	pkts := make(chan opusPkt, 1024)
	tr, err := Start(context.Background(), Config{SampleRate: 44100, Channels: 2, OnPacket: func(p []byte, ts uint32) {
		pkts <- opusPkt{bytes.Clone(p), ts}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	got := feed(t, tr, aus, pkts)
	pid := tr.Status().PID
	cpu := childCPU(t, pid)
	for i, p := range got {
		if n := OpusSamples(p.pkt); n != 960 {
			t.Fatalf("packet %d: %d samples, want 960 (20 ms)", i, n)
		}
		if i > 0 && p.ts-got[i-1].ts != 960 {
			t.Fatalf("packet %d: timestamp step %d, want 960", i, p.ts-got[i-1].ts)
		}
	}
	audio := time.Duration(len(got)) * 20 * time.Millisecond
	cores := cpu.Seconds() / audio.Seconds()
	t.Logf("AAC->Opus: %d packets (%s of audio) for %s of ffmpeg CPU: %.4f core per stream", len(got), audio, cpu, cores)
	if st := tr.Status(); st.Dropped != 0 || st.Err != "" {
		t.Fatalf("status %+v", st)
	}
}

// childCPU reads a process's user+system time from /proc.
func childCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

func TestRestartAfterKill(t *testing.T) {
	rtmptest.NeedFFmpeg(t)
	aus := aacFrames(t, 2)
	pkts := make(chan opusPkt, 1024)
	tr, err := Start(context.Background(), Config{SampleRate: 44100, Channels: 2, MinBackoff: time.Millisecond, OnPacket: func(p []byte, ts uint32) {
		pkts <- opusPkt{bytes.Clone(p), ts}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	feed(t, tr, aus[:40], pkts)
	pid := tr.Status().PID
	p, _ := os.FindProcess(pid)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	// Keep writing until a new child gives out packets again.
	for i := 0; ; i++ {
		tr.Write(aus[i%len(aus)])
		select {
		case <-pkts:
			if st := tr.Status(); st.Restarts > 0 && st.PID != pid && st.PID != 0 {
				return
			}
		case <-time.After(20 * time.Millisecond): // pacing the writes, not waiting on an event
		}
		if i > 5000 {
			t.Fatalf("no packets after the restart; status %+v", tr.Status())
		}
	}
}

func TestMissingFFmpeg(t *testing.T) {
	tr, err := Start(context.Background(), Config{SampleRate: 48000, Channels: 1, FFmpeg: "/nonexistent/ffmpeg",
		OnPacket: func([]byte, uint32) {}})
	if err != nil {
		t.Fatal(err)
	}
	tr.Write([]byte{1, 2, 3})
	tr.Close()
	if st := tr.Status(); st.Err != "audio unavailable: ffmpeg not found" {
		t.Fatalf("status %+v", st)
	}
}

func TestOpusSamples(t *testing.T) {
	for _, c := range []struct {
		p    []byte
		want int
	}{
		{[]byte{0xfc}, 960},        // CELT FB 20 ms, one frame
		{[]byte{0xfd}, 1920},       // two frames
		{[]byte{0xff, 0x03}, 2880}, // code 3, three frames
		{[]byte{0x08}, 960},        // SILK NB 20 ms
		{[]byte{0xff}, 0},
		{nil, 0},
	} {
		if got := OpusSamples(c.p); got != c.want {
			t.Errorf("OpusSamples(%x) = %d, want %d", c.p, got, c.want)
		}
	}
}

func FuzzOggReader(f *testing.F) {
	f.Add([]byte("OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x03abc"))
	f.Add([]byte("OggS"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewOggReader(bytes.NewReader(b))
		for range 1000 {
			p, err := r.Next()
			if err != nil {
				return
			}
			if len(p) > maxOggPacket {
				t.Fatalf("packet of %d bytes", len(p))
			}
			OpusSamples(p)
		}
	})
}

func TestADTSHeader(t *testing.T) {
	au := []byte{1, 2, 3, 4, 5}
	b := make([]byte, adtsHeaderLen+len(au))
	putADTSHeader(b, 4, 2, len(au))
	copy(b[adtsHeaderLen:], au)
	var ps mpeg4audio.ADTSPackets
	if err := ps.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if p := ps[0]; p.SampleRate != 44100 || p.ChannelCount != 2 || !bytes.Equal(p.AU, au) || p.Type != mpeg4audio.ObjectTypeAACLC {
		t.Fatalf("%+v", p)
	}
}
