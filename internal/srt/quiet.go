package srt

import gosrt "github.com/datarhei/gosrt"

// quietLogger is gosrt's Logger with every topic off. gosrt's own default
// keeps a queue of 1,024 log entries (≈ 0.5 MB) per listener or caller that
// nobody reads when no topic is on; Parley logs SRT through slog instead.
type quietLogger struct{}

func (quietLogger) HasTopic(string) bool                     { return false }
func (quietLogger) Print(string, uint32, int, func() string) {}
func (quietLogger) Listen() <-chan gosrt.Log                 { return nil }
func (quietLogger) Close()                                   {}

// GoSRTConfig is gosrt's default configuration with its debug log off, for a
// listener or a caller.
func GoSRTConfig() gosrt.Config {
	c := gosrt.DefaultConfig()
	c.Logger = quietLogger{}
	return c
}
