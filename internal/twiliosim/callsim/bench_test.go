package callsim

import (
	"context"
	"testing"
)

// BenchmarkPlace measures one unpaced call of 500 frames (10 s of audio)
// against the echoing fake app, including the webhooks.
func BenchmarkPlace(b *testing.B) {
	app := newFakeApp(b, streamTwiML(b))
	c := app.call()
	c.MediaFrames = 500
	b.ReportAllocs()
	for b.Loop() {
		res, err := Place(context.Background(), c)
		if err != nil || res.ReceivedMedia != c.MediaFrames {
			b.Fatalf("call: %v (received %d)", err, res.ReceivedMedia)
		}
	}
}
