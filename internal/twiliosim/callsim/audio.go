package callsim

import "math"

const (
	// SampleRate is the Media Streams audio rate (audio/x-mulaw, 8000 Hz mono).
	SampleRate = 8000
	// FrameSamples is the number of µ-law bytes in one 20 ms media frame.
	FrameSamples = SampleRate / 50
	// frameMillis is the media time one frame covers.
	frameMillis   = 20
	toneAmplitude = 8000.0
)

// toneFrame returns frame number n (0-based) of a continuous sine tone at hz,
// µ-law encoded; hz <= 0 gives digital silence (0xFF).
func toneFrame(hz float64, n int) []byte {
	out := make([]byte, FrameSamples)
	for i := range out {
		var s int16
		if hz > 0 {
			t := float64(n*FrameSamples+i) / SampleRate
			s = int16(toneAmplitude * math.Sin(2*math.Pi*hz*t))
		}
		out[i] = linearToMulaw(s)
	}
	return out
}

// linearToMulaw encodes one 16-bit linear PCM sample as G.711 µ-law.
func linearToMulaw(sample int16) byte {
	const (
		bias = 0x84
		clip = 32635
	)
	v := int(sample)
	sign := 0
	if v < 0 {
		v = -v
		sign = 0x80
	}
	if v > clip {
		v = clip
	}
	v += bias
	exponent := 7
	for mask := 0x4000; v&mask == 0 && exponent > 0; mask >>= 1 {
		exponent--
	}
	mantissa := (v >> (exponent + 3)) & 0x0F
	return ^byte(sign | exponent<<4 | mantissa)
}
