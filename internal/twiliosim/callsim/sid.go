package callsim

import (
	"crypto/rand"
	"encoding/hex"
)

// newSID returns prefix followed by 32 random lowercase hex digits, the shape
// of every Twilio SID (CA… calls, MZ… streams, RE… recordings).
func newSID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return prefix + hex.EncodeToString(b[:])
}
