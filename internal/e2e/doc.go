// Package e2e drives Parley's browser app in real headless Chromium
// (chromedp) against an in-process server: calls, chat, files, stats,
// bitrate caps, relay-only ICE, full rooms and device switching. The tests
// skip when Chromium is missing, except in CI (env CI set), where that is a
// failure. See docs/client-js.md.
package e2e
