package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestExposition(t *testing.T) {
	r := New()
	c := r.Counter("parley_x_total", "x")
	c.Add(3)
	v := r.CounterVec("parley_errors_total", "errors", "code")
	v.Inc("bad-json")
	v.Inc("bad-json")
	r.GaugeFunc("parley_rooms", "rooms", func() float64 { return 2 })
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, nil)
	body := rec.Body.String()
	for _, want := range []string{"parley_x_total 3\n", `parley_errors_total{code="bad-json"} 2`, "# TYPE parley_rooms gauge\nparley_rooms 2\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q in\n%s", want, body)
		}
	}
}
