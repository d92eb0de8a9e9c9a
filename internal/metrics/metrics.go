// Package metrics is a small Prometheus text-format registry: counters,
// labelled counters and gauges read on scrape. It has no global registry;
// the server owns one and hands it to the planes.
package metrics

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds collectors in registration order.
type Registry struct {
	mu    sync.Mutex
	items []collector
}

type collector interface{ write(w io.Writer) }

// New returns an empty registry.
func New() *Registry { return &Registry{} }

func (r *Registry) add(c collector) {
	r.mu.Lock()
	r.items = append(r.items, c)
	r.mu.Unlock()
}

// Counter is a monotonically increasing value.
type Counter struct {
	name, help string
	v          atomic.Uint64
}

// Counter registers a counter.
func (r *Registry) Counter(name, help string) *Counter {
	c := &Counter{name: name, help: help}
	r.add(c)
	return c
}

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value is the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

func (c *Counter) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", c.name, c.help, c.name, c.name, c.v.Load())
}

// CounterVec is a counter with one label.
type CounterVec struct {
	name, help, label string
	mu                sync.Mutex
	vals              map[string]*atomic.Uint64
}

// CounterVec registers a counter with one label.
func (r *Registry) CounterVec(name, help, label string) *CounterVec {
	c := &CounterVec{name: name, help: help, label: label, vals: map[string]*atomic.Uint64{}}
	r.add(c)
	return c
}

// Inc adds one to the series with the given label value.
func (c *CounterVec) Inc(value string) {
	c.mu.Lock()
	v := c.vals[value]
	if v == nil {
		v = new(atomic.Uint64)
		c.vals[value] = v
	}
	c.mu.Unlock()
	v.Add(1)
}

// Value returns one series' count.
func (c *CounterVec) Value(value string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.vals[value]; v != nil {
		return v.Load()
	}
	return 0
}

func (c *CounterVec) write(w io.Writer) {
	c.mu.Lock()
	keys := make([]string, 0, len(c.vals))
	for k := range c.vals {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	sort.Strings(keys)
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.name, c.help, c.name)
	for _, k := range keys {
		fmt.Fprintf(w, "%s{%s=%q} %d\n", c.name, c.label, k, c.Value(k))
	}
}

type funcMetric struct {
	name, help, kind string
	f                func() float64
}

func (g funcMetric) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", g.name, g.help, g.name, g.kind, g.name, g.f())
}

// GaugeFunc registers a gauge read from f at scrape time.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.add(funcMetric{name, help, "gauge", f})
}

// CounterFunc registers a counter read from f at scrape time.
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	r.add(funcMetric{name, help, "counter", f})
}

// ServeHTTP writes all metrics in the Prometheus text format.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var b strings.Builder
	r.mu.Lock()
	items := append([]collector(nil), r.items...)
	r.mu.Unlock()
	for _, c := range items {
		c.write(&b)
	}
	io.WriteString(w, b.String())
}

// RegisterRuntime adds the Go runtime's heap, stack and goroutine gauges,
// which the load tools read to compute memory per connection.
func (r *Registry) RegisterRuntime() {
	r.add(runtimeCollector{})
}

type runtimeCollector struct{}

func (runtimeCollector) write(w io.Writer) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "# HELP go_goroutines Goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
	fmt.Fprintf(w, "# HELP go_memstats_heap_inuse_bytes Heap bytes in use.\n# TYPE go_memstats_heap_inuse_bytes gauge\ngo_memstats_heap_inuse_bytes %d\n", ms.HeapInuse)
	fmt.Fprintf(w, "# HELP go_memstats_stack_inuse_bytes Stack bytes in use.\n# TYPE go_memstats_stack_inuse_bytes gauge\ngo_memstats_stack_inuse_bytes %d\n", ms.StackInuse)
}
