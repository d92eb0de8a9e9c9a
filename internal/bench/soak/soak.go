// Package soak is `parley bench soak`: signaling clients and media
// sessions joining and leaving a server for a long while, to show that
// what they leave behind does not grow — the server's goroutines and heap
// are read (after a forced garbage collection) once the first round has
// come and gone, then during the churn, then after everyone has left.
package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley/parley/internal/bench/measure"
	"github.com/parley/parley/internal/bench/meeting"
	"github.com/parley/parley/internal/bench/proc"
	"github.com/parley/parley/internal/bench/signaling"
	"github.com/parley/parley/pkg/client"
	"github.com/parley/parley/pkg/protocol"
)

// Options of one run.
type Options struct {
	URL       string // server base URL (loopback)
	OpsURL    string // its operations listener (/metrics)
	PprofURL  string // its --pprof listener: forced GC and goroutine dumps
	ServerPID int    // for RSS; 0 = not read

	Clients       int           // signaling clients at any time (default 1000)
	RoomSize      int           // signaling members per room (default 10)
	Sessions      int           // media sessions at any time (default 50)
	MediaRoomSize int           // media sessions per SFU room (default 5)
	Stay          time.Duration // mean time a client stays before leaving and coming back (default 20 s; media sessions twice that)
	Interval      time.Duration // a signaling client signals a room-mate this often (default 2 s)
	VideoBitrate  int           // media sessions' video, bits/s (default 150 kbit/s)
	Duration      time.Duration // churn (default 10 min)
	Sample        time.Duration // reading during the churn this often (default 1 min)
	PerAddress    int           // clients per loopback source address (default 10)
	ProfileDir    string        // goroutine and heap profiles before and after go here; "" = none
	Progress      io.Writer
}

func (o *Options) fill() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Clients, 1000)
	def(&o.RoomSize, 10)
	def(&o.Sessions, 50)
	def(&o.MediaRoomSize, 5)
	def(&o.VideoBitrate, 150_000)
	def(&o.PerAddress, 10)
	defd(&o.Stay, 20*time.Second)
	defd(&o.Interval, 2*time.Second)
	defd(&o.Duration, 10*time.Minute)
	defd(&o.Sample, time.Minute)
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Reading is the server's state at one moment.
type Reading struct {
	At         float64 `json:"at_s"` // since the churn began; negative before
	Goroutines float64 `json:"goroutines"`
	HeapMiB    float64 `json:"heap_inuse_mib"`
	RSSMiB     float64 `json:"rss_mib"`
	Members    float64 `json:"room_members"`
	SFU        float64 `json:"sfu_participants"`
}

// Result of a run.
type Result struct {
	Date          string    `json:"date"`
	Clients       int       `json:"clients"`
	Sessions      int       `json:"sessions"`
	Duration      float64   `json:"duration_s"`
	Joins         int64     `json:"signaling_joins"`
	JoinErrors    int64     `json:"signaling_join_errors"`
	Signals       int64     `json:"signals_sent"`
	MediaJoins    int64     `json:"media_joins"`
	MediaErrors   int64     `json:"media_join_errors"`
	Before        Reading   `json:"before"`
	During        []Reading `json:"during"`
	After         Reading   `json:"after"`
	GoroutineGrow float64   `json:"goroutine_growth"`
	HeapGrowMiB   float64   `json:"heap_growth_mib"`
}

// Run warms up (one round of every client joining and leaving), reads
// the idle server, churns for Duration, lets everyone leave and reads it
// again.
func Run(ctx context.Context, o Options) (Result, error) {
	o.fill()
	res := Result{Date: time.Now().UTC().Format(time.RFC3339), Clients: o.Clients, Sessions: o.Sessions}
	if o.PprofURL == "" {
		return res, errors.New("soak: needs the server's --pprof listener (PprofURL) to force a garbage collection before each reading")
	}
	media, err := meeting.NewSessions(o.URL, o.VideoBitrate)
	if err != nil {
		return res, err
	}
	r := &runner{o: o, media: media, sources: signaling.NewSources(o.PerAddress)}

	// Warm-up: every slot joins once and leaves, so pools, caches and
	// the runtime's own structures are at their working size.
	fmt.Fprintf(o.Progress, "warm-up: %d signaling clients and %d media sessions join once\n", o.Clients, o.Sessions)
	r.churn(ctx, time.Now(), true)
	if res.Before, err = r.idle(ctx, "before"); err != nil {
		return res, err
	}
	res.Before.At = -1

	start := time.Now()
	end := start.Add(o.Duration)
	fmt.Fprintf(o.Progress, "churn for %v (idle: %.0f goroutines, %.1f MiB heap)\n", o.Duration, res.Before.Goroutines, res.Before.HeapMiB)
	done := make(chan struct{})
	go func() { defer close(done); r.churn(ctx, end, false) }()
	t := time.NewTicker(o.Sample)
	defer t.Stop()
sampling:
	for {
		select {
		case <-done:
			break sampling
		case <-ctx.Done():
			<-done
			return res, ctx.Err()
		case <-t.C:
			rd, err := r.read(ctx, false)
			if err != nil {
				fmt.Fprintf(o.Progress, "reading: %v\n", err)
				continue
			}
			rd.At = time.Since(start).Seconds()
			res.During = append(res.During, rd)
			fmt.Fprintf(o.Progress, "%4.0f s: %.0f members, %.0f media sessions, %.0f goroutines, %.1f MiB heap\n", rd.At, rd.Members, rd.SFU, rd.Goroutines, rd.HeapMiB)
		}
	}
	res.Duration = time.Since(start).Seconds()
	res.Joins, res.JoinErrors, res.Signals = r.joins.Load(), r.joinErrs.Load(), r.signals.Load()
	res.MediaJoins, res.MediaErrors = r.mediaJoins.Load(), r.mediaErrs.Load()
	if res.After, err = r.idle(ctx, "after"); err != nil {
		return res, err
	}
	res.After.At = res.Duration
	res.GoroutineGrow = res.After.Goroutines - res.Before.Goroutines
	res.HeapGrowMiB = res.After.HeapMiB - res.Before.HeapMiB
	return res, nil
}

type runner struct {
	o       Options
	media   *meeting.Sessions
	sources *signaling.Sources

	joins, joinErrs, signals, mediaJoins, mediaErrs atomic.Int64
}

// churn runs every slot until end; once = each slot joins one time.
func (r *runner) churn(ctx context.Context, end time.Time, once bool) {
	var wg sync.WaitGroup
	for i := range r.o.Clients {
		wg.Add(1)
		go func() { defer wg.Done(); r.signalSlot(ctx, i, end, once) }()
	}
	for i := range r.o.Sessions {
		wg.Add(1)
		go func() { defer wg.Done(); r.mediaSlot(ctx, i, end, once) }()
	}
	wg.Wait()
}

// stay is how long one visit lasts: uniform in [mean/2, 3·mean/2], cut
// at end; during the warm-up a short visit.
func stay(mean time.Duration, end time.Time, once bool) time.Duration {
	if once {
		return mean / 10
	}
	d := mean/2 + rand.N(mean)
	return min(d, time.Until(end))
}

// signalSlot is one signaling client coming and going: join a room, signal
// the member before it now and then, read everything, leave, come back.
func (r *runner) signalSlot(ctx context.Context, i int, end time.Time, once bool) {
	// Spread the first joins over a tenth of the mean visit.
	if !sleep(ctx, rand.N(r.o.Stay/10+1)) {
		return
	}
	room := fmt.Sprintf("soak-%d", i/r.o.RoomSize)
	for ctx.Err() == nil && (once || time.Now().Before(end)) {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := client.Dial(dctx, r.o.URL, &client.Options{Buffer: 256, HTTPClient: r.sources.Of(i)})
		var j *protocol.Message
		if err == nil {
			j, err = c.Join(dctx, room, fmt.Sprint("s", i), "")
		}
		cancel()
		if err != nil {
			r.joinErrs.Add(1)
			if c != nil {
				c.Close()
			}
			if once || !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		r.joins.Add(1)
		r.visit(ctx, c, j, stay(r.o.Stay, end, once))
		c.Close()
		if once {
			return
		}
	}
}

// visit keeps a joined client for d: it signals the first other member
// it knows every Interval and drains its events.
func (r *runner) visit(ctx context.Context, c *client.Client, j *protocol.Message, d time.Duration) {
	var peer string
	if len(j.Peers) > 0 {
		peer = j.Peers[0].ID
	}
	t := time.NewTicker(r.o.Interval)
	defer t.Stop()
	leave := time.NewTimer(d)
	defer leave.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-leave.C:
			return
		case m, ok := <-c.Events():
			if !ok {
				return
			}
			switch {
			case m.Type == protocol.TypePeerJoined && peer == "":
				peer = m.ID
			case m.Type == protocol.TypePeerLeft && m.ID == peer:
				peer = ""
			}
		case <-t.C:
			if peer != "" && c.SendRaw(ctx, []byte(`{"type":"signal","to":"`+peer+`","data":{"soak":true}}`)) == nil {
				r.signals.Add(1)
			}
		}
	}
}

// mediaSlot is one media session coming and going in an SFU room.
func (r *runner) mediaSlot(ctx context.Context, i int, end time.Time, once bool) {
	if !sleep(ctx, rand.N(r.o.Stay/5+1)) {
		return
	}
	room := fmt.Sprintf("soak-media-%d", i/r.o.MediaRoomSize)
	for ctx.Err() == nil && (once || time.Now().Before(end)) {
		s, err := r.media.Join(ctx, room, i)
		if err != nil {
			r.mediaErrs.Add(1)
			if once || !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		r.mediaJoins.Add(1)
		sleep(ctx, stay(2*r.o.Stay, end, once))
		s.Close()
		if once {
			return
		}
	}
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool { return measure.Sleep(ctx, d) == nil }

// idle waits for the server to have no members and no media sessions
// left (a closed client's member goes at once; one whose socket merely
// dropped waits out the resume grace), then reads it after a forced
// garbage collection and saves its profiles.
func (r *runner) idle(ctx context.Context, name string) (Reading, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rd, err := r.read(ctx, true)
		if err != nil {
			return rd, err
		}
		if rd.Members == 0 && rd.SFU == 0 {
			return rd, r.saveProfiles(ctx, name)
		}
		if time.Now().After(deadline) {
			return rd, fmt.Errorf("soak: %s: %v members and %v media sessions still there 2 minutes after every client left", name, rd.Members, rd.SFU)
		}
		if !sleep(ctx, 500*time.Millisecond) {
			return rd, ctx.Err()
		}
	}
}

// read takes one reading; gc first forces a collection (pprof's
// /debug/pprof/heap?gc=1), so the heap figure is live memory.
func (r *runner) read(ctx context.Context, gc bool) (Reading, error) {
	if gc {
		if _, err := r.get(ctx, r.o.PprofURL+"/debug/pprof/heap?gc=1"); err != nil {
			return Reading{}, err
		}
	}
	m, err := signaling.Scrape(ctx, r.o.OpsURL)
	if err != nil {
		return Reading{}, err
	}
	rd := Reading{Goroutines: m["go_goroutines"], HeapMiB: m["go_memstats_heap_inuse_bytes"] / (1 << 20),
		Members: m["parley_room_members"], SFU: m["parley_sfu_participants"]}
	if r.o.ServerPID > 0 {
		if rss, err := proc.RSS(r.o.ServerPID); err == nil {
			rd.RSSMiB = float64(rss) / (1 << 20)
		}
	}
	return rd, nil
}

func (r *runner) saveProfiles(ctx context.Context, name string) error {
	if r.o.ProfileDir == "" {
		return nil
	}
	for _, p := range []struct{ file, path string }{
		{name + "-goroutines.txt", "/debug/pprof/goroutine?debug=1"},
		{name + "-heap.pb.gz", "/debug/pprof/heap?gc=1"},
	} {
		b, err := r.get(ctx, r.o.PprofURL+p.path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(r.o.ProfileDir, p.file), b, 0o644); err != nil {
			return fmt.Errorf("soak: save profile: %w", err)
		}
	}
	return nil
}

func (r *runner) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("soak: %s: %s", url, resp.Status)
	}
	return b, err
}

// Table formats the result for people.
func (r Result) Table() string {
	var b strings.Builder
	row := func(rd Reading) {
		fmt.Fprintf(&b, "  %8.0f s  %6.0f goroutines  %7.1f MiB heap  %7.1f MiB RSS  %5.0f members  %4.0f media\n", rd.At, rd.Goroutines, rd.HeapMiB, rd.RSSMiB, rd.Members, rd.SFU)
	}
	fmt.Fprintf(&b, "soak: %d signaling clients and %d media sessions coming and going for %.0f s\n", r.Clients, r.Sessions, r.Duration)
	fmt.Fprintf(&b, "signaling joins %d (%d failed), signals %d; media joins %d (%d failed)\n", r.Joins, r.JoinErrors, r.Signals, r.MediaJoins, r.MediaErrors)
	b.WriteString("before (idle, after a warm-up round):\n")
	row(r.Before)
	b.WriteString("during:\n")
	for _, rd := range r.During {
		row(rd)
	}
	b.WriteString("after (idle):\n")
	row(r.After)
	fmt.Fprintf(&b, "growth: %+.0f goroutines, %+.2f MiB heap\n", r.GoroutineGrow, r.HeapGrowMiB)
	return b.String()
}
