package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"time"
)

// frameBytes is one 20 ms frame of 8 kHz µ-law audio.
const frameBytes = 160

// epoch is the zero of every timestamp carried in a frame; time.Since reads
// the monotonic clock, and senders and receivers share this process.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// frameWriter builds media messages whose audio starts with the send time:
// the first 8 bytes of the 160-byte payload are nanoseconds since epoch, the
// 9th is 1 when the frame is to be timed, the rest is µ-law silence (0xFF).
// One per sender; the returned slice is reused.
type frameWriter struct {
	audio [frameBytes]byte
	b64   []byte
	out   []byte
}

func newFrameWriter() *frameWriter {
	w := &frameWriter{b64: make([]byte, base64.StdEncoding.EncodedLen(frameBytes)), out: make([]byte, 0, 512)}
	for i := range w.audio {
		w.audio[i] = 0xFF
	}
	return w
}

func (w *frameWriter) payload(sentAt int64, measured bool) []byte {
	binary.BigEndian.PutUint64(w.audio[:8], uint64(sentAt))
	w.audio[8] = 0xFF
	if measured {
		w.audio[8] = 1
	}
	base64.StdEncoding.Encode(w.b64, w.audio[:])
	return w.b64
}

// caller returns Twilio's media message for chunk seq (1-based) of streamSID.
func (w *frameWriter) caller(streamSID string, seq int, sentAt int64, measured bool) []byte {
	o := append(w.out[:0], `{"event":"media","sequenceNumber":"`...)
	o = strconv.AppendInt(o, int64(seq+2), 10) // connected and start came first
	o = append(o, `","streamSid":"`...)
	o = append(o, streamSID...)
	o = append(o, `","media":{"track":"inbound","chunk":"`...)
	o = strconv.AppendInt(o, int64(seq), 10)
	o = append(o, `","timestamp":"`...)
	o = strconv.AppendInt(o, int64(seq*20), 10)
	o = append(o, `","payload":"`...)
	o = append(o, w.payload(sentAt, measured)...)
	o = append(o, `"}}`...)
	w.out = o
	return o
}

var (
	mediaPrefix = []byte(`{"event":"media"`)
	payloadKey  = []byte(`"payload":"`)
)

// sentAt returns the send time and timing flag carried by a media message
// built by frameWriter; ok is false for any other message.
func sentAt(msg []byte) (at int64, measured, ok bool) {
	if !bytes.HasPrefix(msg, mediaPrefix) {
		return 0, false, false
	}
	i := bytes.Index(msg, payloadKey)
	if i < 0 || len(msg) < i+len(payloadKey)+12 {
		return 0, false, false
	}
	var head [9]byte // 12 base64 characters are 9 bytes
	if _, err := base64.StdEncoding.Decode(head[:], msg[i+len(payloadKey):i+len(payloadKey)+12]); err != nil {
		return 0, false, false
	}
	return int64(binary.BigEndian.Uint64(head[:8])), head[8] == 1, true
}
