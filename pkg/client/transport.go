package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/coder/websocket"
)

type wsTransport struct{ c *websocket.Conn }

func dialWS(ctx context.Context, baseURL string, hc *http.Client) (*wsTransport, error) {
	u := "ws" + strings.TrimPrefix(baseURL, "http") + "/ws"
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled, HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	c.SetReadLimit(16 << 20)
	return &wsTransport{c: c}, nil
}

func (t *wsTransport) send(ctx context.Context, b []byte) error {
	return t.c.Write(ctx, websocket.MessageText, b)
}

func (t *wsTransport) recv(ctx context.Context) ([][]byte, error) {
	_, b, err := t.c.Read(ctx) // ctx has no Done channel: no per-read timer
	if err != nil {
		return nil, err
	}
	return [][]byte{b}, nil
}

func (t *wsTransport) close() error { return t.c.Close(websocket.StatusNormalClosure, "bye") }

// httpTransport speaks the long-poll API: POST to send, GET events to receive.
type httpTransport struct {
	hc      *http.Client
	session string // base URL of the session resource
	ctx     context.Context
	cancel  context.CancelFunc
	once    sync.Once
}

// dialHTTP opens a session; body, when not nil, is the resume message.
func dialHTTP(ctx context.Context, baseURL string, hc *http.Client, body []byte) (*httpTransport, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/api/session", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("open HTTP session: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		ID      string `json:"id"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if resp.StatusCode == http.StatusGone && json.NewDecoder(resp.Body).Decode(&out) == nil {
		return nil, &JoinError{Code: out.Code, Message: out.Message} // resume refused
	}
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&out) != nil || out.ID == "" {
		return nil, fmt.Errorf("open HTTP session: status %s", resp.Status)
	}
	tctx, cancel := context.WithCancel(context.Background())
	return &httpTransport{hc: hc, session: baseURL + "/api/session/" + out.ID, ctx: tctx, cancel: cancel}, nil
}

func (t *httpTransport) send(ctx context.Context, b []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.session, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("status %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

var errSessionGone = errors.New("client: HTTP session is gone")

func (t *httpTransport) recv(context.Context) ([][]byte, error) {
	for {
		req, err := http.NewRequestWithContext(t.ctx, http.MethodGet, t.session+"/events", nil)
		if err != nil {
			return nil, err
		}
		resp, err := t.hc.Do(req)
		if err != nil {
			return nil, err
		}
		var batch []json.RawMessage
		err = json.NewDecoder(resp.Body).Decode(&batch)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil, errSessionGone
		}
		if resp.StatusCode != http.StatusOK || err != nil {
			return nil, fmt.Errorf("poll: status %s: %v", resp.Status, err)
		}
		if len(batch) == 0 {
			continue
		}
		out := make([][]byte, len(batch))
		for i, m := range batch {
			out[i] = m
		}
		return out, nil
	}
}

func (t *httpTransport) close() error {
	t.once.Do(func() {
		req, err := http.NewRequest(http.MethodDelete, t.session, nil)
		if err == nil {
			if resp, err := t.hc.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		t.cancel()
	})
	return nil
}
