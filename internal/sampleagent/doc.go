// Package sampleagent is a tiny stand-in for an AI voice agent. It speaks the
// server side of Twilio's Media Streams protocol (twilio-facts.md §5), so it
// can sit behind the webhook server's media bridge, or be pointed at by
// Twilio (or the call simulator) directly.
//
// On each stream it reads connected and start, echoes every caller media
// frame back, sends a mark after every N frames and counts the marks that
// come back, records DTMF digits, and closes the stream after stop. What it
// saw is exposed through Agent.Stats and a GET /stats JSON endpoint so tests
// and the demo can show what happened.
package sampleagent
