package callsim

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestLinearToMulaw(t *testing.T) {
	g := NewWithT(t)
	g.Expect(linearToMulaw(0)).To(Equal(byte(0xFF)))
	g.Expect(linearToMulaw(32767)).To(Equal(byte(0x80)))
	g.Expect(linearToMulaw(-32768)).To(Equal(byte(0x00)))
	g.Expect(linearToMulaw(-1000)^linearToMulaw(1000)).To(Equal(byte(0x80)), "sign is the top bit")
}

func TestToneFrame(t *testing.T) {
	g := NewWithT(t)
	silence := toneFrame(0, 3)
	g.Expect(silence).To(HaveLen(FrameSamples))
	for _, b := range silence {
		g.Expect(b).To(Equal(byte(0xFF)))
	}
	g.Expect(toneFrame(440, 0)).To(HaveLen(FrameSamples))
	g.Expect(toneFrame(440, 0)).NotTo(Equal(toneFrame(440, 1)), "the tone's phase runs on across frames")
}
